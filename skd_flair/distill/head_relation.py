"""The head-aware factorised parsing student: a word's relation is predicted knowing its head.

Per word d, one softmax over head offsets o and, for the head h = d + o, one softmax over relations whose
logits add a dependent part and a head part: ``P(o, r) = P(o) softmax_r(dep_d + head_h)[r]`` (``head_0 = 0``
for ROOT). The offset-times-relation student (``offset_relation``) cannot tell an ``obl`` of a verb from an
``nmod`` of a noun; this one reads both words. Its output columns stay one ``[B, N, K + 2R]`` tensor (offsets,
dependent parts, head parts), so export and decoding see the same shape of graph.

Structural KD stays exact. With q the teacher's per-word joint ``q_d(o, r)`` over the student's columns:

    -sum_y P_t(y) log P_s(y) = -sum_d sum_o q_d(o) log p_d(o) - sum_d sum_{o,r} q_d(o, r) log P_s(r | d, o)

and ``log P_s(r | d, o) = dep_d[r] + head_h[r] - log Z(d, o)``, so the second sum is
``sum_{d,r} q_d(r) dep_d[r] + sum_{h,r} A_h(r) head_h[r] - sum_{d,o} q_d(o) log Z(d, o)`` with
``A_h(r) = sum_d q_d(head = h, r)``, the teacher's expected number of r-dependents of h. The targets are the
offset marginals ``[N, K]``, the relation marginals ``[N, R]`` and A ``[N, R]`` — never the ``[N, K, R]`` joint.

Teacher mass on heads or relations the student has no column for is dropped from the joint and the joint
renormalised per word (``unknown="renormalize"``), or refused (``"error"``). Targets do not temper locally (a
tempered joint has no such sums): use ``temperature_mode: global``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar, Dict, List, Sequence, Tuple

import torch

from ..structs._checks import StructureInputError, as_lengths, length_mask
from .factorisations import Factorisation
from .labels import LabelMismatchError
from .losses import _cross_entropy
from .maps import _LOST_MASS_TOLERANCE, register_map
from .offset_relation import OFFSET_PREFIX, offset_label
from .targets import ArcMarginals, Field, Targets

__all__ = ["HEAD_PREFIX", "head_labels", "split_head_labels", "HeadRelationScores", "HeadRelationMarginals",
           "HeadRelationStudent", "arcs_to_head_relations"]

HEAD_PREFIX = "^"
HEAD_OFFSET_PREFIX = "~"


def head_labels(offsets: Sequence[int], relations: Sequence[str], head_offsets: bool = False) -> List[str]:
    """The columns of a head-aware student: ``"@{offset}"``, the relations, ``"^{relation}"``, and with
    `head_offsets` ``"~{offset}"`` (a word's part in the offset logits of the words it would head)."""
    return [offset_label(o) for o in offsets] + list(relations) + [HEAD_PREFIX + r for r in relations] + \
        ([f"{HEAD_OFFSET_PREFIX}{o}" for o in offsets] if head_offsets else [])


def split_head_labels(labels: Sequence[str]) -> Tuple[List[int], List[str]]:
    offsets, relations, _ = _split(tuple(labels))
    return list(offsets), list(relations)


@functools.lru_cache(maxsize=64)
def _split(labels: Tuple[str, ...]) -> Tuple[Tuple[int, ...], Tuple[str, ...], bool]:
    offsets = [int(x[len(OFFSET_PREFIX):]) for x in labels if x.startswith(OFFSET_PREFIX)]
    relations = [x for x in labels if not x.startswith((OFFSET_PREFIX, HEAD_PREFIX, HEAD_OFFSET_PREFIX))]
    head_offsets = any(x.startswith(HEAD_OFFSET_PREFIX) for x in labels)
    if not offsets or not relations or head_labels(offsets, relations, head_offsets) != list(labels):
        raise LabelMismatchError(f"head-aware parsing labels must be '@<offset>' columns, relation names, "
                                 f"'^<relation>' for each, then optionally '~<offset>' for each, got "
                                 f"{list(labels)[:8]}...")
    return tuple(offsets), tuple(relations), head_offsets


def _head_index(offsets: Sequence[int], n: int, lengths: torch.Tensor, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Head position ``[N, K]`` (0 = ROOT, clamped into 0..N) of word d at each offset, and whether it is a head
    the sentence has ``[B, N, K]``."""
    words = torch.arange(1, n + 1, device=device).unsqueeze(1)
    heads = words + torch.tensor(list(offsets), device=device, dtype=torch.long).unsqueeze(0)
    possible = (heads >= 0) & (heads != words) & (heads <= lengths.view(-1, 1, 1))
    return heads.clamp(0, n), possible & length_mask(lengths, n).unsqueeze(-1)


def _with_root_row(x: torch.Tensor) -> torch.Tensor:
    """``[B, N, C]`` per-word head parts -> ``[B, N + 1, C]`` indexed by head position, ROOT's (row 0) all 0."""
    return torch.cat([x.new_zeros(x.shape[0], 1, x.shape[2]), x], 1)


@dataclass
class HeadRelationScores:
    """A head-aware parsing student's scores: ``emissions [B, N, K + 2R]`` (see the module)."""

    emissions: torch.Tensor
    lengths: torch.Tensor
    labels: List[str]
    factorisation: ClassVar[str] = "offset_head_relation"
    # padded words in a batch up to which `paired_relation_mass` gathers pairs instead of looping over offsets: the
    # loop's fixed cost (about 0.2 ms an offset) loses below about 450 words; at batch 32 of EWT (about 700) it
    # takes 23 ms where the gather takes 35 (one thread)
    gather_up_to_words: ClassVar[int] = 450

    def __post_init__(self):
        self.lengths = as_lengths(self.lengths, self.emissions.shape[0], self.emissions.shape[1],
                                  self.emissions.device)
        offsets, relations, self.head_offsets = _split(tuple(self.labels))
        self.offsets, self.relations = list(offsets), list(relations)
        if self.emissions.shape[-1] != len(self.labels):
            raise StructureInputError(f"{len(self.labels)} label names for {self.emissions.shape[-1]} columns")

    @property
    def mask(self) -> torch.Tensor:
        return length_mask(self.lengths, self.emissions.shape[1])

    def parts(self, temperature: float = 1.0):
        """(offset logits ``[B, N, K]``, dependent parts ``[B, N, R]``, head parts ``[B, N, R]``) at T; with head
        offset columns, word d's logit at offset k adds its head's column k (0 for ROOT or outside)."""
        k, r = len(self.offsets), len(self.relations)
        x = self.emissions / temperature
        off = x[..., :k]
        if self.head_offsets:
            index, possible = self.heads()
            rows = _with_root_row(x[..., k + 2 * r:])
            off = off + rows[:, index, torch.arange(k, device=x.device)].masked_fill(~possible, 0.0)
        return off, x[..., k:k + r], x[..., k + r:k + 2 * r]

    def heads(self):
        return _head_index(self.offsets, self.emissions.shape[1], self.lengths, self.emissions.device)

    @staticmethod
    def head_parts_at(head: torch.Tensor, index: torch.Tensor, possible: torch.Tensor, cols: torch.Tensor
                      ) -> torch.Tensor:
        """``[B, N, k, R]``: the head parts of the heads at offset columns `cols` ``[B, N, k]`` (`index`, `possible`
        from `heads`); ROOT's and a head outside the sentence's are 0, so padding never changes a word's scores
        (exports pad differently)."""
        at = index.unsqueeze(0).expand(cols.shape[0], -1, -1).gather(2, cols)
        parts = _with_root_row(head).gather(1, at.flatten(1).unsqueeze(-1).expand(-1, -1, head.shape[2]))
        return parts.view(*at.shape, -1).masked_fill(~possible.gather(2, cols).unsqueeze(-1), 0.0)

    def relation_logits(self, temperature: float = 1.0) -> torch.Tensor:
        """``[B, N, K, R]``: word d's relation logits when its head is the one at offset k."""
        _, dep, head = self.parts(temperature)
        index, possible = self.heads()
        cols = torch.arange(len(self.offsets), device=dep.device).expand(*dep.shape[:2], -1)
        return dep.unsqueeze(2) + self.head_parts_at(head, index, possible, cols)

    def relation_log_probs_at(self, offset_col: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """``[B, N, R]``: each word's relation log probabilities given the head at its offset column `offset_col`
        ``[B, N]`` (-1: none; any column then); the gold loss needs only these, not all ``[B, N, K, R]``."""
        _, dep, head = self.parts(temperature)
        index, possible = self.heads()
        part = self.head_parts_at(head, index, possible, offset_col.clamp(min=0).unsqueeze(-1)).squeeze(2)
        return torch.log_softmax(dep + part, -1).masked_fill(~self.mask.unsqueeze(-1), 0.0)

    def paired_relation_mass(self, pairs: torch.Tensor) -> torch.Tensor:
        """``[B, N, K]`` float64: for word d and offset k, the probability that d's relation (given the head at k) is
        one `pairs` ``[K, R]`` allows with k. Decoding needs only this, never ``[B, N, K, R]`` (which made head-aware
        prediction 5 times slower than the plain student's): few sentences gather each (word, allowed pair); a
        batch takes one offset at a time, its heads a shifted slice of the words. Entries whose head is outside
        the sentence are arbitrary (a decoder never reads them)."""
        _, dep, head = self.parts()
        dep, rows = dep.double(), _with_root_row(head.double())
        e = torch.exp(dep - dep.amax(-1, keepdim=True))  # softmax(dep + head) = e * f / (e . f): shifts cancel
        f = torch.exp(rows - rows.amax(-1, keepdim=True))
        norm = torch.einsum("bdr,bhr->bdh", e, f)  # [B, N, N + 1]: every (word, head) normaliser
        active = pairs.any(1).nonzero().flatten().tolist()
        if e.shape[0] * e.shape[1] <= self.gather_up_to_words:
            index, _ = self.heads()  # [N, K]; a head outside the sentence reads a row its mass never reaches
            kk, rr = pairs.nonzero(as_tuple=True)
            vals = e[:, :, rr] * f[:, index[:, kk], rr]  # [B, N, pairs]
            numer = vals.new_zeros(*vals.shape[:2], len(self.offsets)).index_add_(2, kk, vals)
            return numer / norm.gather(2, index.unsqueeze(0).expand(e.shape[0], -1, -1))
        n = e.shape[1]
        out = e.new_zeros(*e.shape[:2], len(self.offsets))
        for k in active:
            o = self.offsets[k]
            lo, hi = max(0, -o - 1), min(n, n - o)  # words whose head d + 1 + o is in 0..N
            if lo >= hi:
                continue
            rs, heads = pairs[k].nonzero().flatten(), slice(lo + 1 + o, hi + 1 + o)
            numer = (e[:, lo:hi, rs] * f[:, heads, rs]).sum(-1)
            out[:, lo:hi, k] = numer / torch.diagonal(norm[:, lo:hi, heads], dim1=1, dim2=2)
        return out

    def log_probs_offsets(self, temperature: float = 1.0) -> torch.Tensor:
        """``[B, N, K]`` offset log probabilities (0 on padding words)."""
        return torch.log_softmax(self.parts(temperature)[0], -1).masked_fill(~self.mask.unsqueeze(-1), 0.0)

    def log_probs(self, temperature: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
        """(offsets ``[B, N, K]``, relations given each offset's head ``[B, N, K, R]``); 0 on padding words."""
        keep = self.mask.unsqueeze(-1)
        logp_o = self.log_probs_offsets(temperature)
        logp_r = torch.log_softmax(self.relation_logits(temperature), -1).masked_fill(~keep.unsqueeze(-1), 0.0)
        return logp_o, logp_r


@dataclass
class HeadRelationMarginals(Targets):
    """Per-word teacher marginals for a head-aware student: ``offsets [B, N, K]``, ``relations [B, N, R]`` and the
    expected relation counts of each word as a head ``head_relations [B, N, R]`` (see the module)."""

    kind: ClassVar[str] = "offset_head_relation"
    layout: ClassVar[Dict[str, Field]] = {"offsets": Field(), "relations": Field(), "head_relations": Field()}

    offsets: torch.Tensor
    relations: torch.Tensor
    head_relations: torch.Tensor
    lengths: torch.Tensor

    def _shape(self):
        if self.offsets.dim() != 3 or self.relations.shape != self.head_relations.shape or \
                self.offsets.shape[:2] != self.relations.shape[:2]:
            raise StructureInputError(f"offsets [B, N, K], relations and head_relations [B, N, R] must agree, got "
                                      f"{list(self.offsets.shape)}, {list(self.relations.shape)} and "
                                      f"{list(self.head_relations.shape)}")
        return self.offsets.shape[0], self.offsets.shape[1], None

    def temper(self, temperature: float):
        raise ValueError("head-aware parsing targets cannot be tempered locally (a tempered joint has no per-head "
                         "sums); use temperature_mode 'global'")

    def token_probs(self) -> torch.Tensor:
        return self.offsets


@register_map(ArcMarginals, "offset_head_relation")
def arcs_to_head_relations(m: ArcMarginals, student_labels: Sequence[str], unknown: str = "renormalize"
                           ) -> HeadRelationMarginals:
    """A labelled tree teacher's per-word joint over (head, relation), in the student's columns, summed three
    ways (see the module)."""
    if unknown not in ("renormalize", "error"):
        raise LabelMismatchError(f"a head-aware parsing student takes unknown 'renormalize' or 'error', got "
                                 f"{unknown!r}")
    offsets, relations = split_head_labels(student_labels)
    if m.relations is None:
        raise LabelMismatchError("a head-aware parsing student needs a teacher that labels its arcs")
    index = {name: r for r, name in enumerate(m.relation_names)}
    present = [r for r, name in enumerate(relations) if name in index]
    arcs = m.arcs  # [B, N+1, N+1] = P(head(d) = h)
    batch, size, _ = arcs.shape
    n = size - 1
    heads, possible = _head_index(offsets, n, m.lengths, arcs.device)  # [N, K], [B, N, K]
    words = torch.arange(1, size, device=arcs.device).unsqueeze(1).expand_as(heads)
    cond = arcs.new_zeros(batch, size, size, len(relations))  # P(r | h -> d) in the student's relation columns
    cond[..., present] = m.relations[..., [index[relations[r]] for r in present]]
    joint = (arcs[:, heads, words].unsqueeze(-1) * cond[:, heads, words]) * possible.unsqueeze(-1)  # [B, N, K, R]
    mask = length_mask(m.lengths, n)
    total = joint.sum((2, 3))
    dropped = torch.where(mask, (1.0 - total).clamp(min=0.0), total.new_zeros(()))
    if unknown == "error" and dropped.numel() and float(dropped.max()) > _LOST_MASS_TOLERANCE:
        raise LabelMismatchError(f"the teacher puts up to {float(dropped.max()):.3g} of a word's mass on heads or "
                                 "relations the student has no column for")
    joint = joint / torch.where(total > 0, total, total.new_ones(())).view(batch, n, 1, 1)
    q_off, q_rel = joint.sum(-1), joint.sum(2)
    per_head = q_rel.new_zeros(batch, size, len(relations))
    per_head.index_add_(1, heads.reshape(-1), joint.reshape(batch, -1, len(relations)))
    return HeadRelationMarginals(q_off, q_rel, per_head[:, 1:], m.lengths, labels=list(student_labels),
                                 dropped_mass=dropped)


class HeadRelationStudent(Factorisation):
    """Head offsets, and relations given the head (``HeadRelationScores``)."""

    name = "offset_head_relation"
    description = "head-aware factorised parsing (offset, relation given head)"

    def structural_loss(self, scores: HeadRelationScores, targets: HeadRelationMarginals, temperature):
        off, dep, head = scores.parts(temperature)
        mask = scores.mask
        keep = mask.unsqueeze(-1)
        logp_o = torch.log_softmax(off, -1)
        q_off = targets.offsets.to(off.dtype)
        # log Z(d, o) only where the teacher puts mass: a few offsets a word, not all K (exact: q = 0 elsewhere)
        used = max(int((q_off > 0).sum(-1).max()), 1) if q_off.numel() else 1
        q_top, k_top = q_off.topk(min(used, q_off.shape[-1]), -1)  # [B, N, k]
        index, possible = scores.heads()
        log_z = torch.logsumexp(dep.unsqueeze(2) + scores.head_parts_at(head, index, possible, k_top), -1)
        expected = (targets.relations.to(dep.dtype) * dep).masked_fill(~keep, 0.0).sum((1, 2)) + \
            (targets.head_relations.to(head.dtype) * head).masked_fill(~keep, 0.0).sum((1, 2))
        loss = _cross_entropy(q_off, logp_o, mask) - expected + _weighted(q_top, log_z, mask)
        return temperature ** 2 * loss

    posterior_loss = structural_loss  # the student's substructures are per word: its marginals are its softmaxes

    def token_log_probs(self, scores, temperature):
        # the offsets only: the relations given every offset's head ([B, N, K, R]) cost a sixth of a training step
        return scores.log_probs_offsets(temperature)


def _weighted(q: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum q x`` per sentence, 0 where q = 0 (x may be anything there)."""
    prod = torch.where((q == 0) | ~mask.unsqueeze(-1), q.new_zeros(()), q * x)
    return prod.sum((1, 2))
