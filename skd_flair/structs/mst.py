"""Maximum spanning arborescence (Chu-Liu-Edmonds) for non-projective dependency decoding."""
from __future__ import annotations

from typing import List, Optional

import numpy as np

__all__ = ["chu_liu_edmonds", "max_spanning_tree"]


def _find_cycle(heads: np.ndarray) -> Optional[List[int]]:
    """A cycle in the graph `heads` (node -> its head; node 0 is the root), or None."""
    state = np.zeros(len(heads), dtype=np.int8)  # 0 new, 1 on the current path, 2 finished
    for first in range(1, len(heads)):
        if state[first]:
            continue
        path, v = [], first
        while v > 0 and state[v] == 0:
            state[v] = 1
            path.append(v)
            v = heads[v]
        if v > 0 and state[v] == 1:
            return path[path.index(v):]
        state[path] = 2
    return None


def chu_liu_edmonds(scores: np.ndarray) -> np.ndarray:
    """Best arborescence rooted at node 0 of the dense graph `scores[h, d]` (-inf = no arc).

    Every node other than 0 needs at least one finite incoming arc. Returns heads with heads[0] = -1.
    The root may take several children; see `max_spanning_tree` for the single-root variant.
    """
    s = np.array(scores, dtype=np.float64)
    np.fill_diagonal(s, -np.inf)
    s[:, 0] = -np.inf
    heads = s.argmax(0)
    heads[0] = -1
    cycle = _find_cycle(heads)
    if cycle is None:
        return heads
    cyc = np.array(cycle)
    in_cycle = np.zeros(len(s), dtype=bool)
    in_cycle[cyc] = True
    rest = np.flatnonzero(~in_cycle)  # contains the root at index 0
    k = len(rest)
    sub = np.full((k + 1, k + 1), -np.inf)
    sub[:k, :k] = s[np.ix_(rest, rest)]
    # entering the cycle at v replaces v's cycle arc: score relative to that arc
    enter = s[np.ix_(rest, cyc)] - s[heads[cyc], cyc][None, :]
    best_entry = enter.argmax(1)
    sub[:k, k] = enter[np.arange(k), best_entry]
    leave = s[np.ix_(cyc, rest)]
    best_exit = leave.argmax(0)
    sub[k, :k] = leave[best_exit, np.arange(k)]
    sub_heads = chu_liu_edmonds(sub)
    out = heads.copy()
    for i, node in enumerate(rest[1:], start=1):
        h = sub_heads[i]
        out[node] = cyc[best_exit[i]] if h == k else rest[h]
    u = sub_heads[k]
    out[cyc[best_entry[u]]] = rest[u]
    return out


def max_spanning_tree(scores: np.ndarray, single_root: bool = True) -> np.ndarray:
    """Best dependency tree for `scores[h, d]` over nodes 0..n (0 = root); returns heads (heads[0] = -1).

    With `single_root`, every root arc is lowered by more than the score range of any two trees, so the
    best tree has exactly one root child and is the best among those (the constant trick that Zmigrod
    et al. 2020 show to be exact).
    """
    s = np.array(scores, dtype=np.float64)
    n = len(s) - 1
    if n <= 0:
        return np.full(len(s), -1)
    off = ~np.eye(n + 1, dtype=bool)
    off[:, 0] = False
    finite = np.isfinite(s) & off
    if not finite.any():
        raise ValueError("no finite arc scores")
    lo, hi = s[finite].min(), s[finite].max()
    # impossible arcs (-inf) stay impossible; others are finite and bounded
    if single_root:
        # every word's best head: when that is a tree with one root child, it is the best tree of all, single
        # root or not (most sentences of a trained parser), and the constant trick's deep recursion is spared
        greedy = np.where(off, s, -np.inf).argmax(0)
        greedy[0] = -1
        if (int((greedy[1:] == 0).sum()) == 1 and np.isfinite(s[greedy[1:], np.arange(1, n + 1)]).all()
                and _find_cycle(greedy) is None):
            return greedy
        s[0, 1:] -= 1.0 + n * (hi - lo)
    return chu_liu_edmonds(s)
