"""The span-CRF (semi-Markov) student: its scores, its targets, its factorisation and its maps.

The student's labels are the entity types plus ``O``; a structure is a segmentation into labelled segments
(``O`` segments one token wide), scored by segment scores and label transitions between neighbouring segments
(``structs.semi_markov.SemiMarkovCRF``). Its substructures are labelled segments and boundary label pairs,
so structural KD needs the teacher's marginals of both:

- from a BIOES CRF teacher (``ChainScores``): the teacher is first restricted to valid BIOES sequences
  (invalid transitions, starts and ends set to -inf, so every sequence it weighs is a segmentation). A chain
  is Markov, so the probability of a run of tags is a product of its pairwise marginals divided by the unary
  marginals in between: ``P(B-e at i, I-e .., E-e at j) = P(y_i, y_i+1) prod_k P(y_k+1 | y_k)`` with
  ``P(y_k+1 | y_k) = P(y_k, y_k+1) / P(y_k)``; ``P(S-e at i)`` and ``P(O at i)`` are unary marginals. A
  boundary pair (a ends at j, a' starts at j+1) sums the pairwise marginals of the end tags of a (``E-a``,
  ``S-a``, or ``O``) and the start tags of a' (``B-a'``, ``S-a'``, or ``O``). Marginals suffice; the
  teacher's scores are needed only to restrict it to valid sequences first.
- from a span teacher (``SpanScores``): its distribution over span sets is a semi-Markov CRF whose O segments
  score 0 and whose transitions are 0, so its marginals are that structure's.

Segments wider than the student's ``max_width`` have no student counterpart: their teacher mass is lost and
reported per token in ``dropped_mass``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Dict, List, Optional, Sequence

import torch

from ..structs._checks import length_mask
from ..structs.semi_markov import SemiMarkovCRF, band_from_spans
from .factorisations import Factorisation
from .labels import SPECIAL_LABELS, LabelMismatchError, align_labels, gather_labels
from .maps import register_map
from .scores import ChainScores
from .span_scores import SpanScores
from .targets import ChainMarginals, Field, Targets

__all__ = ["OUTSIDE", "with_outside", "SegmentScores", "SegmentMarginals", "SpanCRFStudent", "chain_to_segments",
           "segments_to_segments", "valid_bioes"]

OUTSIDE = "O"
_TINY = 1e-300


@dataclass
class SegmentScores:
    """A span-CRF student's scores: band-layout ``segments [B, N, W, L]``, ``transitions [L, L]``."""

    segments: torch.Tensor
    transitions: torch.Tensor
    lengths: torch.Tensor
    labels: Optional[List[str]] = None
    factorisation: ClassVar[str] = "span_crf"

    def structure(self, temperature: float = 1.0) -> SemiMarkovCRF:
        t = temperature
        return SemiMarkovCRF(self.segments / t, self.transitions / t, self.lengths)


@dataclass
class SegmentMarginals(Targets):
    """Marginals of a span-CRF student's substructures: ``segments[b, j, c, a]`` = P(the segment of width
    ``c + 1`` ending at token j is labelled a), ``boundaries[b, j, a, a']`` = P(a ends at j, a' starts at j+1)."""

    kind: ClassVar[str] = "segments"
    layout: ClassVar[Dict[str, Field]] = {"segments": Field(), "boundaries": Field(offset=-1)}
    dims: ClassVar[str] = "B, N, W, L"

    segments: torch.Tensor
    boundaries: torch.Tensor
    lengths: torch.Tensor

    def token_probs(self) -> torch.Tensor:
        return SemiMarkovCRF.coverage(self.segments)


def with_outside(band: torch.Tensor) -> torch.Tensor:
    """Band-layout span scores ``[B, N, W, E]`` with an ``O`` label appended: one token wide, score 0."""
    outside = torch.full_like(band[..., :1], float("-inf"))
    outside[:, :, 0] = 0.0
    return torch.cat([band, outside], -1)


def _student_targets(segments: torch.Tensor, boundaries: torch.Tensor, m, labels: Sequence[str]) -> SegmentMarginals:
    """Targets in the student's space, with the teacher mass per token they could not keep (``dropped_mass``)."""
    dropped = (1.0 - SemiMarkovCRF.coverage(segments).sum(-1)).clamp(min=0) * m.mask
    return SegmentMarginals(segments, boundaries, m.lengths, labels=list(labels), dropped_mass=dropped)


def _tag_columns(labels: Sequence[str], types: Sequence[str]):
    """Per student type, the teacher columns of B-, I-, E-, S- (BIOES required) and the O column."""
    column = {tag: k for k, tag in enumerate(labels)}
    if OUTSIDE not in column:
        raise LabelMismatchError(f"the teacher has no 'O' tag; teacher tags: {list(labels)}")
    missing = [f"{role}-{t}" for t in types for role in "BIES" if f"{role}-{t}" not in column]
    if missing:
        raise LabelMismatchError(f"a span-CRF student needs a BIOES teacher; the teacher lacks {missing}")
    return ({role: torch.tensor([column[f"{role}-{t}"] for t in types]) for role in "BIES"}, column[OUTSIDE])


def _student_types(student_labels: Sequence[str]) -> List[str]:
    if OUTSIDE not in student_labels:
        raise LabelMismatchError(f"a span-CRF student's labels must include 'O'; got {list(student_labels)}")
    return [name for name in student_labels if name != OUTSIDE]


def valid_bioes(scores: ChainScores) -> ChainScores:
    """A BIOES CRF teacher restricted to valid tag sequences (B-x/I-x only before I-x/E-x, every other tag only
    before B-*, S-* or O; no start on I/E, no end on B/I). Special labels become impossible too."""
    if not scores.is_crf:
        return scores.without_special()  # a MaxEnt teacher has no transitions to restrict
    labels = list(scores.labels or [])
    role = {k: tag.partition("-") for k, tag in enumerate(labels)}

    def opens(k):  # the tag continues a segment that must go on
        return role[k][0] in ("B", "I") and role[k][1] == "-"

    size = len(labels)
    allowed = torch.zeros(size, size, dtype=torch.bool)
    for a in range(size):
        for b in range(size):
            continues = role[b][0] in ("I", "E") and role[b][1] == "-"
            allowed[a, b] = (role[b][2] == role[a][2]) if opens(a) and continues else (not opens(a) and not continues)
    first = torch.tensor([not (role[k][0] in ("I", "E") and role[k][1] == "-") for k in range(size)])
    last = torch.tensor([not opens(k) for k in range(size)])
    special = torch.tensor([name in SPECIAL_LABELS for name in labels])
    allowed &= ~special.unsqueeze(0) & ~special.unsqueeze(1)
    device, neg = scores.transitions.device, float("-inf")
    return ChainScores(scores.emissions, scores.lengths, scores.labels,
                       scores.transitions.masked_fill(~allowed.to(device), neg),
                       None if scores.start is None else scores.start.masked_fill(~(first & ~special).to(device), neg),
                       None if scores.end is None else scores.end.masked_fill(~(last & ~special).to(device), neg))


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > _TINY, num / den.clamp(min=_TINY), num.new_zeros(()))


@register_map(ChainMarginals, "span_crf")
def chain_to_segments(m: ChainMarginals, student_labels: Sequence[str], max_width: int) -> SegmentMarginals:
    """A BIOES chain's segment and boundary marginals (see the module), in the student's label order."""
    types = _student_types(student_labels)
    cols, outside = _tag_columns(m.labels or [], types)
    u, p = m.unary, m.pairwise  # [B, N, T], [B, N-1, T, T]
    batch, n, _ = u.shape
    width = max_width
    seg = u.new_zeros(batch, n, width, len(types))  # band: [b, j, c, e]
    seg[:, :, 0] = u[:, :, cols["S"]]
    if n > 1 and width > 1:
        b_, i_, e_ = cols["B"], cols["I"], cols["E"]
        seg[:, 1:, 1] = p[:, :, b_, e_]
        # conditionals from token k to k + 1 (k = 0..N-2; zero at N-1): I -> I and I -> E
        ii, ie = u.new_zeros(batch, n, len(types)), u.new_zeros(batch, n, len(types))
        ii[:, :-1] = _ratio(p[:, :, i_, i_], u[:, :-1, i_])
        ie[:, :-1] = _ratio(p[:, :, i_, e_], u[:, :-1, i_])
        run = u.new_zeros(batch, n, len(types))  # run[i]: P(B at i, I at i+1 .. i+c-1), here c = 2
        run[:, :-1] = p[:, :, b_, i_]
        for c in range(2, min(width, n)):  # the segment of width c + 1 starting at i ends at i + c with E
            seg[:, c:, c] = run[:, :n - c] * ie[:, c - 1:n - 1]
            longer = u.new_zeros(batch, n, len(types))
            longer[:, :n - c] = run[:, :n - c] * ii[:, c - 1:n - 1]
            run = longer
    boundaries = u.new_zeros(batch, max(n - 1, 0), len(student_labels), len(student_labels))
    if n > 1:
        ends = u.new_zeros(u.shape[-1], len(student_labels))
        starts = u.new_zeros(u.shape[-1], len(student_labels))
        for k, name in enumerate(student_labels):
            if name == OUTSIDE:
                ends[outside, k] = starts[outside, k] = 1.0
            else:
                e = types.index(name)
                ends[cols["E"][e], k] = ends[cols["S"][e], k] = 1.0
                starts[cols["B"][e], k] = starts[cols["S"][e], k] = 1.0
        boundaries = torch.einsum("bjst,sa,tc->bjac", p, ends, starts)
    order = [types.index(name) if name != OUTSIDE else len(types) for name in student_labels]
    padded = torch.cat([seg, seg.new_zeros(batch, n, width, 1)], -1)  # O, with its unary marginal at width 1
    padded[:, :, 0, -1] = u[:, :, outside]
    return _student_targets(padded[..., order], boundaries, m, student_labels)


@register_map(SegmentMarginals, "span_crf")
def segments_to_segments(m: SegmentMarginals, student_labels: Sequence[str], max_width: int) -> SegmentMarginals:
    """Segment marginals in the student's label order and width; wider segments' mass is dropped."""
    idx = align_labels(m.labels or [], student_labels, what="span teacher")
    segments = gather_labels(m.segments, idx, 3, 0.0)[:, :, :max_width]
    if segments.shape[2] < max_width:
        segments = torch.cat([segments, segments.new_zeros(*segments.shape[:2], max_width - segments.shape[2],
                                                           segments.shape[3])], 2)
    boundaries = gather_labels(gather_labels(m.boundaries, idx, 2, 0.0), idx, 3, 0.0)
    return _student_targets(segments, boundaries, m, student_labels)


class SpanCRFStudent(Factorisation):
    """A semi-Markov CRF over labelled segments (``SegmentScores``); `max_width` is its widest segment."""

    name = "span_crf"
    description = "span-CRF (semi-Markov)"

    def __init__(self, max_width: int = 10):
        if max_width < 1:
            raise ValueError(f"max_width must be >= 1, got {max_width}")
        self.max_width = int(max_width)

    @property
    def cache_key(self):
        return [self.name, self.max_width]

    def map_options(self) -> dict:
        return {"max_width": self.max_width}

    def teacher_marginals(self, teacher, temperature: float, arc_marginals: str = "tree"):
        if isinstance(teacher, ChainScores):
            return valid_bioes(teacher).marginals(temperature)
        if isinstance(teacher, SpanScores):
            types = list(teacher.type_names)
            band = band_from_spans(teacher.spans.detach().double() / temperature, teacher.max_width)  # [B, N, W, E]
            # entries past a sentence's end are unused (and may hold anything): made impossible before the checks
            band = band.masked_fill(~length_mask(teacher.lengths, band.shape[1]).view(*band.shape[:2], 1, 1),
                                    float("-inf"))
            labelled = SemiMarkovCRF(with_outside(band), band.new_zeros(len(types) + 1, len(types) + 1),
                                     teacher.lengths)
            return SegmentMarginals(labelled.marginals, labelled.boundary_marginals, teacher.lengths,
                                    labels=types + [OUTSIDE])
        return super().teacher_marginals(teacher, temperature, arc_marginals)

    def _check(self, scores: SegmentScores, targets: SegmentMarginals):
        if targets.segments.shape[2] != scores.segments.shape[2]:
            raise LabelMismatchError(f"the teacher targets were made for segments up to {targets.segments.shape[2]} "
                                     f"tokens wide, the student's go up to {scores.segments.shape[2]}")

    def structural_loss(self, scores, targets, temperature):
        self._check(scores, targets)
        crf = scores.structure(temperature)
        q_seg, q_bound = targets.segments.to(crf.segments.dtype), targets.boundaries.to(crf.segments.dtype)
        return temperature ** 2 * (crf.log_partition - crf.expected_score(q_seg, q_bound))

    def token_log_probs(self, scores, temperature):
        return scores.structure(temperature).token_marginals.clamp(min=1e-30).log()
