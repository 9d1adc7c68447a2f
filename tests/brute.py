"""Brute-force enumeration of every structure on tiny inputs: the ground truth the exact code is held to."""
from __future__ import annotations

import itertools
from typing import Iterator, List, Tuple

import torch


def sequences(n: int, num_labels: int) -> Iterator[Tuple[int, ...]]:
    return itertools.product(range(num_labels), repeat=n)


def chain_score(em, trans, start, end, y) -> torch.Tensor:
    s = start[y[0]] + end[y[-1]] + sum(em[t, y[t]] for t in range(len(y)))
    return s + sum(trans[y[t - 1], y[t]] for t in range(1, len(y)))


def chain_table(em, trans, start, end, n):
    """All sequences of length n of one sentence with their scores: (list of tuples, [S] tensor)."""
    ys = list(sequences(n, em.shape[-1]))
    return ys, torch.stack([chain_score(em, trans, start, end, y) for y in ys])


def is_tree(heads: Tuple[int, ...]) -> bool:
    """heads[d-1] = head of word d (0 = root): every word must reach the root without a cycle."""
    n = len(heads)
    for d in range(1, n + 1):
        seen, h = set(), d
        while h != 0:
            if h in seen:
                return False
            seen.add(h)
            h = heads[h - 1]
    return True


def is_projective(heads: Tuple[int, ...]) -> bool:
    arcs = [(min(h, d), max(h, d)) for d, h in enumerate(heads, start=1)]
    for (a, b), (c, d) in itertools.combinations(arcs, 2):
        if a < c < b < d or c < a < d < b:
            return False
    return True


def trees(n: int, projective: bool, single_root: bool) -> List[Tuple[int, ...]]:
    """Every dependency tree over n words as a tuple of heads (0 = root)."""
    out = []
    for heads in itertools.product(range(n + 1), repeat=n):
        if any(h == d for d, h in enumerate(heads, start=1)):
            continue
        if single_root and sum(h == 0 for h in heads) != 1:
            continue
        if not is_tree(heads):
            continue
        if projective and not is_projective(heads):
            continue
        out.append(heads)
    return out


def tree_score(s, heads) -> torch.Tensor:
    """First-order score of a tree: heads[d-1] = head of word d, s[h, d] = arc score."""
    return sum(s[h, d] for d, h in enumerate(heads, start=1))


def tree_table(scores, lengths, projective: bool, single_root: bool):
    """Per batch item: (trees, scores [T], log Z, arc marginals [N+1, N+1]) of a first-order tree model."""
    out = []
    for b, n in enumerate(lengths):
        ts = trees(int(n), projective, single_root)
        table = torch.stack([tree_score(scores[b], t) for t in ts])
        p = torch.softmax(table, 0)
        marg = torch.zeros(scores.shape[1:], dtype=scores.dtype)
        for t, pt in zip(ts, p):
            for d, h in enumerate(t, start=1):
                marg[h, d] += pt
        out.append((ts, table, torch.logsumexp(table, 0), marg))
    return out


def check_heads(heads, lengths, single_root: bool, projective: bool = True):
    """Decoded heads [B, N+1] form well-formed trees (projective if asked) with the right root count."""
    for b, n in enumerate(lengths):
        t = tuple(heads[b, 1:n + 1].tolist())
        assert heads[b, 0] == -1 and (heads[b, n + 1:] == -1).all()
        assert all(0 <= h <= n and h != d for d, h in enumerate(t, start=1))
        assert is_tree(t) and (is_projective(t) or not projective)
        roots = sum(h == 0 for h in t)
        assert roots == 1 if single_root else roots >= 1


def span_sets(n: int, num_types: int, max_width: int) -> List[List[Tuple[int, int, int]]]:
    """Every set of non-overlapping labelled spans (start, end inclusive, type) over n tokens."""
    out = []

    def rec(pos, acc):
        if pos >= n:
            out.append(list(acc))
            return
        rec(pos + 1, acc)  # token pos is outside any span
        for end in range(pos, min(n, pos + max_width)):
            for r in range(num_types):
                acc.append((pos, end, r))
                rec(end + 1, acc)
                acc.pop()

    rec(0, [])
    return out


def segmentations(n: int, num_labels: int, max_width: int, outside=None) -> List[List[Tuple[int, int, int]]]:
    """Every labelled segmentation of n tokens into segments ``(start, end inclusive, label)`` of at most
    `max_width` tokens; segments labelled `outside` are one token wide."""
    out = []

    def rec(pos, acc):
        if pos == n:
            out.append(list(acc))
            return
        for end in range(pos, min(n, pos + max_width)):
            for a in range(num_labels):
                if a == outside and end > pos:
                    continue
                acc.append((pos, end, a))
                rec(end + 1, acc)
                acc.pop()

    rec(0, [])
    return out


def bioes(spans, n: int, type_names) -> List[str]:
    tags = ["O"] * n
    for i, j, r in spans:
        name = type_names[r]
        if i == j:
            tags[i] = f"S-{name}"
        else:
            tags[i], tags[j] = f"B-{name}", f"E-{name}"
            for m in range(i + 1, j):
                tags[m] = f"I-{name}"
    return tags
