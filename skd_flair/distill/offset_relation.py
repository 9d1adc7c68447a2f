"""The factorised parsing student: per word, one softmax over head offsets and one over relations.

The student of cases 1b/2b predicts a word's tag ``"{h - i}_{rel}"`` as the pair (offset, relation) with
``P(offset, rel) = P(offset) P(rel)``: two small softmaxes instead of one over every (offset, relation) pair
seen in training, most of them rare. Its substructures are a word's offset and a word's relation, so the
structural KD loss is exact with the teacher's per-word marginals of both:

    -sum_y P_t(y) sum_i [log p_i(o_i) + log p_i(r_i)] = -sum_i [sum_o q_i(o) log p_i(o) + sum_r q_i(r) log p_i(r)]

with ``q_i(o) = P_t(head(i) = i + o)`` (the tree marginals) and ``q_i(r) = sum_h P_t(head(i) = h) P_t(r | h -> i)``.
Teacher mass on offsets or relations the student has no column for is lost; `unknown` says what happens to it
(``renormalize``, per word, as the reference does for tags; or ``error``), and it is reported in ``dropped_mass``.

The student's label names are its offset columns, written ``"@{offset}"``, then its relation names.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import ClassVar, Dict, List, Sequence, Tuple

import torch

from ..structs._checks import StructureInputError, as_lengths, length_mask
from .factorisations import Factorisation
from .labels import LabelMismatchError
from .losses import _cross_entropy
from .maps import _LOST_MASS_TOLERANCE, register_map
from .targets import ArcMarginals, Field, Targets
from .temperature import temper_distribution

__all__ = ["OFFSET_PREFIX", "offset_label", "split_labels", "OffsetRelationScores", "OffsetRelationMarginals",
           "OffsetRelationStudent", "arcs_to_offsets_and_relations"]

OFFSET_PREFIX = "@"


def offset_label(offset: int) -> str:
    return f"{OFFSET_PREFIX}{offset}"


def split_labels(labels: Sequence[str]) -> Tuple[List[int], List[str]]:
    """(offsets, relation names) of a factorised student's label names."""
    offsets, relations = _split_labels(tuple(labels))
    return list(offsets), list(relations)


@functools.lru_cache(maxsize=64)
def _split_labels(labels: Tuple[str, ...]) -> Tuple[Tuple[int, ...], Tuple[str, ...]]:
    # cached: every batch's scores split the same few hundred names again (a tenth of a parse at batch 1)
    offsets = [int(name[len(OFFSET_PREFIX):]) for name in labels if name.startswith(OFFSET_PREFIX)]
    relations = [name for name in labels if not name.startswith(OFFSET_PREFIX)]
    if not offsets or len(offsets) + len(relations) != len(labels) or \
            [offset_label(o) for o in offsets] + relations != list(labels):
        raise LabelMismatchError(f"factorised parsing labels must be '@<offset>' columns then relation names, got "
                                 f"{list(labels)[:8]}...")
    return tuple(offsets), tuple(relations)


def _masked_log_softmax(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(x, -1).masked_fill(~mask.unsqueeze(-1), 0.0)


@dataclass
class OffsetRelationScores:
    """A factorised parsing student's scores: ``emissions [B, N, K + R]`` (K offset columns, then R relations)."""

    emissions: torch.Tensor
    lengths: torch.Tensor
    labels: List[str]
    factorisation: ClassVar[str] = "offset_relation"

    def __post_init__(self):
        self.lengths = as_lengths(self.lengths, self.emissions.shape[0], self.emissions.shape[1],
                                  self.emissions.device)
        self.offsets, self.relations = split_labels(self.labels)
        if self.emissions.shape[-1] != len(self.labels):
            raise StructureInputError(f"{len(self.labels)} label names for {self.emissions.shape[-1]} columns")

    @property
    def mask(self) -> torch.Tensor:
        return length_mask(self.lengths, self.emissions.shape[1])

    def log_probs(self, temperature: float = 1.0) -> Tuple[torch.Tensor, torch.Tensor]:
        """(offsets ``[B, N, K]``, relations ``[B, N, R]``) log-softmaxes at temperature T (0 on padding)."""
        k = len(self.offsets)
        x = self.emissions / temperature
        return _masked_log_softmax(x[..., :k], self.mask), _masked_log_softmax(x[..., k:], self.mask)


@dataclass
class OffsetRelationMarginals(Targets):
    """Per-word teacher marginals of a factorised parsing student: ``offsets [B, N, K]``, ``relations [B, N, R]``."""

    kind: ClassVar[str] = "offset_relation"
    layout: ClassVar[Dict[str, Field]] = {"offsets": Field(), "relations": Field()}

    offsets: torch.Tensor
    relations: torch.Tensor
    lengths: torch.Tensor

    def _shape(self):
        if self.offsets.dim() != 3 or self.relations.dim() != 3 or self.offsets.shape[:2] != self.relations.shape[:2]:
            raise StructureInputError(f"offsets [B, N, K] and relations [B, N, R] must agree, got "
                                      f"{list(self.offsets.shape)} and {list(self.relations.shape)}")
        return self.offsets.shape[0], self.offsets.shape[1], None

    def temper(self, temperature: float) -> "OffsetRelationMarginals":
        return replace(self, offsets=temper_distribution(self.offsets, temperature, -1),
                       relations=temper_distribution(self.relations, temperature, -1))

    def token_probs(self) -> torch.Tensor:
        """The head-offset distribution (diagnostics compare heads)."""
        return self.offsets


@register_map(ArcMarginals, "offset_relation")
def arcs_to_offsets_and_relations(m: ArcMarginals, student_labels: Sequence[str], unknown: str = "renormalize"
                                  ) -> OffsetRelationMarginals:
    """A tree teacher's per-word head-offset and relation marginals, in the student's columns (see the module)."""
    if unknown == "unk":
        raise LabelMismatchError("unknown_tags: unk needs an '<unk>' column, and a factorised parsing student has "
                                 "none; use renormalize or error")
    if unknown not in ("renormalize", "error"):
        raise ValueError(f"unknown must be 'renormalize' or 'error', got {unknown!r}")
    offsets, relations = split_labels(student_labels)
    if (m.relations is None) != (not relations):
        raise LabelMismatchError("the teacher labels its arcs and the student predicts no relation, or the other "
                                 "way round")
    arcs = m.arcs  # [B, N+1, N+1] = P(head(d) = h)
    batch, size, _ = arcs.shape
    n, device = size - 1, arcs.device
    words = torch.arange(1, size, device=device).unsqueeze(1)  # [N, 1]
    heads = words + torch.tensor(offsets, device=device).unsqueeze(0)  # [N, K]
    possible = (heads >= 0) & (heads <= n) & (heads != words)
    heads = heads.clamp(0, n)
    q_off = arcs[:, heads, words.expand_as(heads)]  # [B, N, K]
    mask = length_mask(m.lengths, n).unsqueeze(-1)
    q_off = torch.where(possible.unsqueeze(0) & mask, q_off, q_off.new_zeros(()))
    kept = q_off.sum(-1)
    dropped = torch.where(mask.squeeze(-1), (1.0 - kept).clamp(min=0.0), kept.new_zeros(()))
    q_rel = q_off.new_zeros(batch, n, len(relations))
    if relations:
        index = {name: r for r, name in enumerate(m.relation_names or [])}
        missing = [name for name in relations if name not in index]
        present = [r for r, name in enumerate(relations) if name in index]
        # P(rel(d) = r) = sum_h P(head(d) = h) P(r | h -> d)
        per_word = torch.einsum("bhd,bhdr->bdr", arcs, m.relations)[:, 1:]  # [B, N, R_teacher]
        if present:
            q_rel[..., present] = per_word[..., [index[relations[r]] for r in present]]
        q_rel = torch.where(mask, q_rel, q_rel.new_zeros(()))
        dropped = dropped + torch.where(mask.squeeze(-1), (1.0 - q_rel.sum(-1)).clamp(min=0.0), kept.new_zeros(()))
        if missing and unknown == "error":
            raise LabelMismatchError(f"the student has no relation column for {missing}")
    if unknown == "error" and float(dropped.max()) > _LOST_MASS_TOLERANCE:
        raise LabelMismatchError(f"the teacher puts up to {float(dropped.max()):.3g} of a word's mass on heads or "
                                 "relations the student has no column for")
    if unknown == "renormalize":  # per word, like the reference's tags
        q_off = q_off / torch.where(kept > 0, kept, kept.new_ones(())).unsqueeze(-1)
        if relations:
            total = q_rel.sum(-1, keepdim=True)
            q_rel = q_rel / torch.where(total > 0, total, total.new_ones(()))
    return OffsetRelationMarginals(q_off, q_rel, m.lengths, labels=list(student_labels), dropped_mass=dropped)


class OffsetRelationStudent(Factorisation):
    """Independent per-word softmaxes over head offsets and over relations (``OffsetRelationScores``)."""

    name = "offset_relation"
    description = "factorised parsing (offset x relation)"

    def structural_loss(self, scores, targets, temperature):
        logp_o, logp_r = scores.log_probs(temperature)
        mask = scores.mask
        loss = _cross_entropy(targets.offsets.to(logp_o.dtype), logp_o, mask)
        if logp_r.shape[-1]:
            loss = loss + _cross_entropy(targets.relations.to(logp_r.dtype), logp_r, mask)
        return temperature ** 2 * loss

    posterior_loss = structural_loss  # the student's marginals are its softmaxes

    def token_log_probs(self, scores, temperature):
        return scores.log_probs(temperature)[0]
