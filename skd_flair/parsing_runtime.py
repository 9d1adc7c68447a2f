"""Dependency-tree decoding in numpy (no torch, no flair), shared by ``skd_flair.structs.DependencyTree`` and the
ONNX runner of exported parsing students (``skd_flair.onnx_runner``):

- :func:`max_spanning_tree` / :func:`chu_liu_edmonds`: the best (single-rooted) non-projective tree;
- :func:`eisner_heads`: the best single-rooted projective tree (Eisner's algorithm with back-pointers);
- :class:`OffsetTreeDecoder`: a parsing-as-tagging student's per-word tag (or offset and relation) scores ->
  trees, relations and scores, step for step as ``DependencyTagger.predict`` decodes them (head mass summed per
  offset, arcs no tag names at a floor score, the best relation the dictionary pairs with each chosen arc).
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["FLOOR", "OffsetTreeDecoder", "chu_liu_edmonds", "eisner_heads", "max_spanning_tree"]

FLOOR = -1e4  # log head probability of an arc no tag can express: below any real log probability


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

    With `single_root`: the best tree when it has one root child; else every root arc is lowered by more than
    the score range of any two trees, so the best tree has exactly one root child and is the best among those
    (the constant trick that Zmigrod et al. 2020 show to be exact).
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
        # the best tree of all: when it has one root child it is also the best single-root tree, and the constant
        # trick is spared. That trick makes every word's best head a non-root one, so decoding contracts cycle
        # after cycle until one node is left (about one level per word; half of a trained parser's decoding
        # time went there), where the free tree of a trained parser is mostly its greedy heads or one small cycle
        free = chu_liu_edmonds(s)
        if int((free[1:] == 0).sum()) == 1:
            return free
        s[0, 1:] -= 1.0 + n * (hi - lo)
    return chu_liu_edmonds(s)


def eisner_heads(scores: np.ndarray) -> np.ndarray:
    """Best projective tree with exactly one root child for `scores[h, d]` over nodes 0..n (0 = root, all finite
    off the diagonal and column 0); returns heads (heads[0] = -1). The words' charts are Eisner's over 1..n,
    then the root picks the word whose two complete spans and root arc score best."""
    s = np.asarray(scores, dtype=np.float64)
    n = len(s) - 1
    heads = np.full(n + 1, -1)
    if n <= 0:
        return heads
    arcs = s[1:, 1:]  # [h, d] over words 0..n-1
    neg = -np.inf
    # complete (c) and incomplete (i) spans [s, t], headed left (l: head t) or right (r: head s); back-pointers
    cl, cr, il, ir = (np.full((n, n), neg) for _ in range(4))
    bcl, bcr, bi = (np.zeros((n, n), dtype=np.int64) for _ in range(3))  # bi: both incomplete kinds split alike
    idx = np.arange(n)
    cl[idx, idx] = cr[idx, idx] = 0.0
    for w in range(1, n):
        starts = np.arange(n - w)
        ends = starts + w
        mids = starts[:, None] + np.arange(w)[None, :]  # r = s .. t-1
        base = cr[starts[:, None], mids] + cl[mids + 1, ends[:, None]]
        best = base.argmax(1)
        top = base[starts, best]
        il[starts, ends] = top + arcs[ends, starts]
        ir[starts, ends] = top + arcs[starts, ends]
        bi[starts, ends] = mids[starts, best]
        left = cl[starts[:, None], mids] + il[mids, ends[:, None]]  # head t: [s, r] complete + [r, t] incomplete
        best = left.argmax(1)
        cl[starts, ends] = left[starts, best]
        bcl[starts, ends] = mids[starts, best]
        mids_r = mids + 1  # r = s+1 .. t
        right = ir[starts[:, None], mids_r] + cr[mids_r, ends[:, None]]
        best = right.argmax(1)
        cr[starts, ends] = right[starts, best]
        bcr[starts, ends] = mids_r[starts, best]
    root = s[0, 1:] + cl[0, :] + cr[:, n - 1]
    r = int(root.argmax())
    heads[r + 1] = 0
    stack: List[Tuple[str, int, int]] = [("cl", 0, r), ("cr", r, n - 1)]
    while stack:
        kind, a, b = stack.pop()
        if a == b:
            continue
        if kind == "cl":
            m = bcl[a, b]
            stack += [("cl", a, m), ("il", m, b)]
        elif kind == "cr":
            m = bcr[a, b]
            stack += [("ir", a, m), ("cr", m, b)]
        else:
            heads[(a if kind == "il" else b) + 1] = (b if kind == "il" else a) + 1
            m = bi[a, b]
            stack += [("cr", a, m), ("cl", m + 1, b)]
    return heads


class _HeadRelations:
    """A head-aware student's relation distributions, built only where asked: word d's relations given the head
    at offset k are ``softmax(dep_d + head_h)`` (head part 0 for ROOT or a head outside the sentence). The decoder
    needs, per (word, offset), the mass of the relations paired with the offset (`paired`) and, per word, the
    relations at its chosen head (`sentence(b, n).given`); all ``[B, N, K, R]`` at once made decoding slow."""

    gather_per_offset = 60  # (word, offset) pairs per offset below which gathering them beats the offset loop

    def __init__(self, dep: np.ndarray, head: np.ndarray, offsets: np.ndarray, at: np.ndarray, inside: np.ndarray):
        self.dep, self.head, self.offsets, self.at, self.inside = dep, head, offsets, at, inside

    def paired(self, pairs: np.ndarray) -> np.ndarray:
        """``[B, N, K]`` float64: the probability of the relations `pairs` ``[K, R]`` allows at each offset."""
        dep, head = self.dep.astype(np.float64), self.head.astype(np.float64)
        rows = np.concatenate([np.zeros_like(head[:, :1]), head], 1)  # ROOT's part 0: f is 1 there
        e = np.exp(dep - dep.max(-1, keepdims=True))  # softmax(dep + head) = e * f / (e . f): the shifts cancel
        f = np.exp(rows - rows.max(-1, keepdims=True))
        allowed = pairs.astype(np.float64)
        out = (e @ allowed.T) / e.sum(-1, keepdims=True)  # a head outside the sentence: part 0
        b, d, k = np.nonzero(self.inside)  # only (word, offset) pairs whose head is in its sentence
        active = np.unique(k)
        if len(b) <= self.gather_per_offset * len(active):  # few sentences: gather the pairs (about 1.5 us each)
            joint = e[b, d] * f[b, self.at[d, k]]
            out[b, d, k] = (joint * allowed[k]).sum(-1) / joint.sum(-1)
            return out
        # a batch: one offset at a time (about 70 us each), its heads a shifted slice of the words and its few
        # relations; 2-3 times faster than the gather at batch 32, which was most of the decoding time
        norm = np.einsum("bdr,bhr->bdh", e, f)
        for k in active.tolist():
            o = int(self.offsets[k])
            lo, hi = max(0, -o - 1), min(e.shape[1], e.shape[1] - o)  # words whose head d + 1 + o is in 0..N
            rs, heads = np.flatnonzero(pairs[k]), slice(lo + 1 + o, hi + 1 + o)
            within = self.inside[:, lo:hi, k]
            numer = (e[:, lo:hi, rs] * f[:, heads, rs]).sum(-1)
            below = np.where(within, np.diagonal(norm[:, lo:hi, heads], axis1=1, axis2=2), 1.0)
            out[:, lo:hi, k] = np.where(within, numer / below, out[:, lo:hi, k])
        return out

    def sentence(self, b: int, n: int) -> "_HeadRelations":
        return _HeadRelations(self.dep[b, :n], self.head[b], self.offsets, self.at[:n], self.inside[b, :n])

    def given(self, words: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """One sentence's ``[len(words), R]`` relation log probabilities given the head at `cols`."""
        heads = self.at[words, cols]
        ok = self.inside[words, cols] & (heads > 0)  # ROOT's part is 0 too
        part = np.where(ok[:, None], self.head[np.maximum(heads - 1, 0)], np.float32(0.0))
        return _log_softmax(self.dep[words] + part)

    def word(self, i: int) -> np.ndarray:
        """``[K, R]``: word i's relation log probabilities given the head at each offset."""
        k = np.arange(self.at.shape[1])
        return self.given(np.full(len(k), i), k)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


class OffsetTreeDecoder:
    """Trees from a parsing student's output columns, as ``DependencyTagger`` decodes them.

    `config`: the ``"parser"`` section an ONNX export writes (``skd_flair.models.fast_parser.parser_config``):
    ``factorised`` (columns = offsets then relations, two softmaxes) or not (one softmax over the dictionary's
    offset tags); per dictionary tag its offset, relation (index into ``relations``, -1 for none), whether it
    can name a head, and for a factorised student its offset column; ``root_relation``; ``repair``;
    ``head_relations`` (a head-aware student: relation logits are the word's part plus its head's part, columns =
    offsets, relations, head parts; ``skd_flair.distill.head_relation``).

    Head mass is summed per offset with one matrix product a batch (tags -> offsets, or for a factorised student
    P(offset) times the mass of the relations paired with it) and placed on the heads by plain indexing: the
    per-tag scatter was most of the decoding time."""

    def __init__(self, config: Mapping[str, Any]):
        self.factorised = bool(config["factorised"])
        self.head_relations = bool(config.get("head_relations", False))
        self.head_offsets = bool(config.get("head_offsets", False))
        self.repair = config["repair"]
        if self.repair not in ("mst", "eisner"):
            raise ValueError(f"parser repair must be mst or eisner, got {self.repair!r}")
        self.relations: List[str] = list(config["relations"])
        self.root_relation: Optional[str] = config["root_relation"]
        self.tag_offset = np.asarray(config["tag_offsets"], dtype=np.int64)
        self.tag_relation = np.asarray(config["tag_relations"], dtype=np.int64)
        self.usable = np.asarray(config["tag_usable"], dtype=bool)
        self.names_head = self.usable.copy()  # the codec's usable tags (the fallback relation's candidates)
        rel_is_root = np.asarray([r == self.root_relation for r in self.relations] + [False])
        self.tag_is_root = rel_is_root[self.tag_relation]  # -1 -> the trailing False
        self.rel_is_root = rel_is_root[:-1]
        if self.factorised:
            self.offsets = np.asarray(config["offsets"], dtype=np.int64)
            self.tag_offset_col = np.asarray(config["tag_offset_cols"], dtype=np.int64)
            named = (self.tag_offset_col >= 0) & ((self.tag_relation >= 0) | (not self.relations))
            self._factor_ok = named
            self.usable = self.usable & named  # only (offset, relation) pairs carry head mass
            self.pairs = np.zeros((len(self.offsets), max(len(self.relations), 1)), dtype=bool)
            tags = np.flatnonzero(self.usable)
            self.pairs[self.tag_offset_col[tags], np.maximum(self.tag_relation[tags], 0)] = True
            self._low = int(self.offsets.min()) if len(self.offsets) else 0
            self._col_of = np.full(int(self.offsets.max()) - self._low + 1 if len(self.offsets) else 1, -1)
            self._col_of[self.offsets - self._low] = np.arange(len(self.offsets))  # offset value -> its column
        else:
            self.offsets = np.unique(self.tag_offset[self.usable])
            column = {int(o): c for c, o in enumerate(self.offsets)}
            self.to_offsets = np.zeros((len(self.tag_offset), len(self.offsets)))
            for k in np.flatnonzero(self.usable):
                self.to_offsets[k, column[int(self.tag_offset[k])]] = 1.0

    def tag_log_probs(self, columns: np.ndarray) -> np.ndarray:
        """``[..., tags]`` log probabilities of the dictionary's tags (-inf for a tag the student cannot name)."""
        x = columns.astype(np.float32)
        if not self.factorised:
            return _log_softmax(x)
        if self.head_relations:  # a word's relations depend on the other words' columns
            raise ValueError("a head-aware student's tag probabilities need the whole sentence: use decode")
        return self._tag_log_probs(*self._factors(x, ()))

    def _tag_log_probs(self, logp_o: np.ndarray, logp_r: Optional[np.ndarray]) -> np.ndarray:
        """Factorised: ``[..., tags]`` from P(offset) ``[..., K]`` and P(relation) ``[..., R]`` (head-aware:
        ``[..., K, R]``, the relations given the head at each offset)."""
        off, rel = np.maximum(self.tag_offset_col, 0), np.maximum(self.tag_relation, 0)
        out = logp_o[..., off]
        if self.relations:
            out = out + (logp_r[..., off, rel] if self.head_relations else logp_r[..., rel])
        return np.where(self._factor_ok, out, np.float32(-np.inf))

    def _factors(self, x: np.ndarray, lengths: Sequence[int]):
        n_off = len(self.offsets)
        if not self.head_relations:
            return _log_softmax(x[..., :n_off]), (_log_softmax(x[..., n_off:]) if self.relations else None)
        n_rel = len(self.relations)
        dep, head = x[..., n_off:n_off + n_rel], x[..., n_off + n_rel:n_off + 2 * n_rel]
        n = x.shape[1]
        words = np.arange(1, n + 1)[:, None]
        at = words + self.offsets[None, :]  # [N, K] head position, 0 = ROOT
        inside = (at >= 0) & (at != words) & (at[None] <= np.asarray(lengths).reshape(-1, 1, 1))  # [B, N, K]
        at = np.clip(at, 0, n)
        off = x[..., :n_off]
        if self.head_offsets:  # plus the head's own column for that offset
            own = x[..., n_off + 2 * n_rel:]
            own_rows = np.concatenate([np.zeros_like(own[:, :1]), own], 1)
            off = off + np.where(inside, own_rows[:, at, np.arange(n_off)], np.float32(0.0))
        return _log_softmax(off), _HeadRelations(dep, head, self.offsets, at, inside)

    def head_mass(self, logp) -> np.ndarray:
        """``[B, N, offsets]`` probability of each head offset (float64): a factorised student's P(offset) times
        the probability of the relations the dictionary pairs with it, else the summed mass of its tags."""
        if self.factorised:
            logp_o, logp_r = logp
            if self.head_relations:
                paired = logp_r.paired(self.pairs)
            else:
                paired = (np.exp(logp_r.astype(np.float64)) @ self.pairs.T if self.relations
                          else self.pairs.T.astype(np.float64))
            return np.exp(logp_o.astype(np.float64)) * paired
        return np.exp(logp.astype(np.float64)) @ self.to_offsets

    def arcs(self, mass: np.ndarray, n: int) -> np.ndarray:
        """``[n+1, n+1]`` arc scores ``[h, d]`` of one sentence from its offset mass ``[n, offsets]``: log mass,
        `FLOOR` on possible arcs no tag names, -inf on the diagonal and into ROOT."""
        words = np.arange(1, n + 1)[:, None]
        heads = words + self.offsets[None, :]
        ok = (heads >= 0) & (heads <= n) & (heads != words)
        per_head = np.zeros((n, n + 1))
        rows, cols = np.nonzero(ok)
        per_head[rows, heads[rows, cols]] = mass[:n][rows, cols]  # one offset per head and word: no collisions
        with np.errstate(divide="ignore"):
            arcs = np.full((n + 1, n + 1), -np.inf)
            arcs[:, 1:] = np.log(per_head).T
        valid = ~np.eye(n + 1, dtype=bool)
        valid[:, 0] = False
        arcs[valid & np.isneginf(arcs)] = FLOOR
        arcs[~valid] = -np.inf
        return arcs

    def decode(self, columns: np.ndarray, lengths: Sequence[int]) -> List[Tuple[List[int], List[str], List[float]]]:
        """Per sentence: heads (1-based, 0 = ROOT), relations and each word's chosen tag probability (0.0 for an
        arc no tag names), from the output columns ``[B, N, C]``."""
        x = columns.astype(np.float32)
        logp = self._factors(x, lengths) if self.factorised else _log_softmax(x)
        mass = self.head_mass(logp)
        out = []
        for b, n in enumerate(lengths):
            if n == 0:
                out.append(([], [], []))
                continue
            arcs = self.arcs(mass[b], n)
            tree = eisner_heads(arcs) if self.repair == "eisner" else max_spanning_tree(arcs, single_root=True)
            heads = [int(h) for h in tree[1:]]
            if self.factorised:
                rels, probs = self._factorised_relations(
                    logp[0][b, :n], None if logp[1] is None else
                    logp[1].sentence(b, n) if self.head_relations else logp[1][b, :n], heads)
            else:
                rels, probs = self._relations(logp[b, :n], heads)
            out.append((heads, rels, probs))
        return out

    def _factorised_relations(self, logp_o, logp_r, heads: List[int]) -> Tuple[List[str], List[float]]:
        """Each word's best relation among those the dictionary pairs with its head's offset (the root relation
        from ROOT, never elsewhere), scored log P(offset) + log P(relation); else the fallback relation."""
        n = len(heads)
        hs = np.asarray(heads)
        steps = hs - np.arange(1, n + 1)
        inside = (steps >= self._low) & (steps < self._low + len(self._col_of))
        col = np.where(inside, self._col_of[np.clip(steps - self._low, 0, len(self._col_of) - 1)], -1)
        found = np.zeros(n, dtype=bool)
        full_r = logp_r
        if self.head_relations:  # the relations given each word's chosen head
            logp_r = full_r.given(np.arange(n), np.maximum(col, 0))
        if self.relations:
            allowed = self.pairs[np.maximum(col, 0)] & (col >= 0)[:, None]  # [n, R]
            if self.root_relation:
                allowed &= np.where((hs == 0)[:, None], self.rel_is_root[None, :], ~self.rel_is_root[None, :])
            scores = np.where(allowed, logp_o[np.arange(n), np.maximum(col, 0)][:, None] + logp_r, -np.inf)
            best = scores.argmax(1)
            top = scores[np.arange(n), best]
            found = np.isfinite(top)
        rels, probs = [], []
        for i in range(n):
            if found[i]:
                rels.append(self.relations[best[i]])
                probs.append(float(np.exp(np.float64(top[i]))))
            else:
                word_r = None if full_r is None else full_r.word(i) if self.head_relations else full_r[i]
                rels.append(self._fallback(self._tag_log_probs(logp_o[i], word_r), heads[i]))
                probs.append(0.0)
        return rels, probs

    def _relations(self, logp: np.ndarray, heads: List[int]) -> Tuple[List[str], List[float]]:
        """The best tag naming each word's arc (with a root relation: only it from ROOT, never elsewhere), or the
        fallback relation (the root relation from ROOT, else the word's best non-root relation)."""
        n = len(heads)
        hs = np.asarray(heads)
        match = self.usable[None, :] & (self.tag_offset[None, :] == (hs - np.arange(1, n + 1))[:, None])
        if self.root_relation:
            match &= np.where((hs == 0)[:, None], self.tag_is_root[None, :], ~self.tag_is_root[None, :])
        rows = np.where(match, logp, -np.inf)
        best = rows.argmax(1)
        top = rows[np.arange(n), best]
        rels, probs = [], []
        for i in range(n):
            if np.isfinite(top[i]):
                r = self.tag_relation[best[i]]
                rels.append(self.relations[r] if r >= 0 else "dep")
                probs.append(float(np.exp(np.float64(top[i]))))
            else:
                rels.append(self._fallback(logp[i], heads[i]))
                probs.append(0.0)
        return rels, probs

    def _fallback(self, logp: np.ndarray, head: int) -> str:
        if head == 0 and self.root_relation:
            return self.root_relation
        for k in np.argsort(-logp, kind="stable"):
            r = self.tag_relation[k]
            if r >= 0 and self.names_head[k] and self.relations[r] != self.root_relation:
                return self.relations[r]
        return "dep"
