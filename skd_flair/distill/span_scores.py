"""A span teacher's scores (NER as parsing, case 4) and the exact map of its BIOES token marginals onto a
MaxEnt student's tags.

The teacher scores every labelled span ``(i, j, e)`` relative to "no entity there" (for a biaffine span
classifier: the type's logit minus the None logit), and is read as a distribution over sets of
non-overlapping labelled spans, ``P(Y) ~ exp(sum of the scores of the spans in Y)``. Each set is exactly one
BIOES tag sequence, so the token marginals of that distribution are the teacher's marginals of a per-token
BIOES student's substructures (``structs.spans.LabelledSpans`` computes them exactly).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from ..structs._checks import StructureInputError, as_lengths
from ..structs.spans import LabelledSpans
from .labels import SPECIAL_LABELS, LabelMismatchError
from .maps import register_map
from .targets import TokenMarginals

__all__ = ["SpanScores", "SpanTokenMarginals", "spans_to_tags", "spans_to_chain"]

_ROLES = ("B", "I", "E", "S")


@dataclass
class SpanScores:
    """Scores of a span teacher: ``spans[b, i, j, e]`` scores type e over tokens ``i..j`` (inclusive, 0-based)
    relative to leaving them outside every span; only ``i <= j < lengths[b]`` and widths up to `max_width`
    are used. ``type_names`` names the E entity types."""

    spans: torch.Tensor
    lengths: torch.Tensor
    type_names: List[str]
    max_width: Optional[int] = None

    def __post_init__(self):
        if self.spans.dim() != 4 or self.spans.shape[1] != self.spans.shape[2]:
            raise StructureInputError(f"spans must be [B, N, N, E], got {list(self.spans.shape)}")
        batch, n, _, num_types = self.spans.shape
        self.type_names = list(self.type_names)
        if len(self.type_names) != num_types:
            raise StructureInputError(f"{len(self.type_names)} type names for {num_types} span types")
        if len(set(self.type_names)) != num_types:
            raise StructureInputError(f"duplicate entity type names: {self.type_names}")
        bad = [name for name in self.type_names if name == "O" or name in SPECIAL_LABELS]
        if bad:
            raise StructureInputError(f"{bad} cannot name an entity type")
        self.lengths = as_lengths(self.lengths, batch, n, self.spans.device)

    @property
    def labels(self) -> List[str]:
        """The BIOES tag of every token-marginal column (see ``LabelledSpans.bioes_tags``)."""
        return LabelledSpans.bioes_tags(self.type_names)

    def structure(self, temperature: float = 1.0) -> LabelledSpans:
        """The distribution over span sets with scores / T (float64, no graph)."""
        spans = self.spans.detach().double()
        if temperature != 1.0:
            spans = spans / temperature
        return LabelledSpans(spans, self.lengths, self.max_width)

    @torch.no_grad()
    def marginals(self, temperature: float = 1.0) -> "SpanTokenMarginals":
        """P(token m has each BIOES tag) under the span-set distribution at global temperature T."""
        probs = self.structure(temperature).token_marginals
        return SpanTokenMarginals(probs, self.lengths, independent=False, labels=self.labels,
                                  type_names=list(self.type_names))

    @torch.no_grad()
    def decode(self) -> List[list]:
        """The best set of non-overlapping labelled spans per item: ``(start, end inclusive, type name)``."""
        return [[(i, j, self.type_names[e]) for i, j, e in spans] for spans in self.structure().decode()]


@dataclass
class SpanTokenMarginals(TokenMarginals):
    """BIOES token marginals of a span teacher, which knows its entity types: mapped onto a student's tags by
    `spans_to_tags`, which also refuses a student whose entity types differ from the teacher's."""

    type_names: Optional[List[str]] = None


def _student_scheme(student_labels: Sequence[str]):
    """``(types in first-seen order, {type: set of roles})`` of BIO/BIOES tags; other tags are errors."""
    roles: dict = {}
    for tag in student_labels:
        if tag == "O" or tag in SPECIAL_LABELS:
            continue
        role, sep, name = tag.partition("-")
        if not sep or role not in _ROLES or not name:
            raise LabelMismatchError(f"the student's tag {tag!r} is not a BIO/BIOES tag ('B-X', 'I-X', 'E-X', "
                                     f"'S-X' or 'O'); a span teacher can only teach entity tags. Student tags: "
                                     f"{list(student_labels)}")
        roles.setdefault(name, set()).add(role)
    return list(roles), roles


@register_map(SpanTokenMarginals, "maxent")
def spans_to_tags(m: SpanTokenMarginals, student_labels: Sequence[str]) -> TokenMarginals:
    """Case 4: a span teacher's BIOES token marginals in a MaxEnt student's tag order.

    The student must tag exactly the teacher's entity types (by name), with every role of BIOES, or with
    B and I only (BIO: S counts as B and E as I, which is exact for a per-token student). A type on one
    side only is a LabelMismatchError, in either direction: a student type the teacher never predicts would
    silently learn "never", a teacher type the student lacks would lose its mass.
    """
    if m.labels is None:
        raise LabelMismatchError("the span teacher's marginals carry no tag names, so they cannot be aligned")
    teacher_types = list(m.type_names) if m.type_names is not None else \
        list(dict.fromkeys(tag[2:] for tag in m.labels if tag != "O"))
    student_types, roles = _student_scheme(student_labels)
    only_teacher = [t for t in teacher_types if t not in roles]
    only_student = [t for t in student_types if t not in set(teacher_types)]
    if only_teacher or only_student:
        raise LabelMismatchError(
            f"the span teacher and the student tag different entity types: teacher only {only_teacher}, student "
            f"only {only_student} (teacher types {teacher_types}, student types {student_types}). Build both "
            f"label dictionaries from the same corpus.")
    if "O" not in student_labels:
        raise LabelMismatchError(f"the student has no 'O' tag; student tags: {list(student_labels)}")
    bioes, bio = set(_ROLES), {"B", "I"}
    bad = {t: sorted(r) for t, r in roles.items() if r != bioes and r != bio}
    if bad:
        raise LabelMismatchError(f"the student's tags are neither BIOES nor BIO for types {bad}")
    # student tag k collects the teacher columns of its own name, and for a BIO type also S (into B), E (into I)
    column = {tag: k for k, tag in enumerate(m.labels)}
    fold = m.probs.new_zeros(len(column), len(student_labels))
    for k, tag in enumerate(student_labels):
        if tag in SPECIAL_LABELS:
            continue
        fold[column[tag], k] = 1.0
        if tag != "O" and roles[tag[2:]] == bio:
            fold[column[("S" if tag[0] == "B" else "E") + tag[1:]], k] = 1.0
    return TokenMarginals(m.probs @ fold, m.lengths, m.independent, labels=list(student_labels),
                          dropped_mass=m.dropped_mass)


@register_map(SpanTokenMarginals, "crf")
def spans_to_chain(m: SpanTokenMarginals, student_labels: Sequence[str]):
    """No exact map (yet): a CRF student needs the teacher's tag-pair marginals, and a span teacher's tokens are
    not independent, so products of its token marginals would not be them."""
    raise LabelMismatchError("a span teacher teaches a MaxEnt student (DistillableTagger(use_crf=False)): its tokens "
                             "are not independent, so its token marginals give no exact tag-pair marginals for a CRF "
                             "student (case 4 pairs a span teacher with a MaxEnt BIOES tagger)")
