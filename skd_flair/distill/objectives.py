"""KD objectives: what to take from the teacher (``targets``) and how the student learns from it (``loss``).

``targets`` runs once per sentence (offline, cached) on the teacher's scores and returns marginals over
the student's substructures; ``loss`` runs every training step on the student's scores. Objectives are
registered by name so a configuration can say ``{type: structural, temperature: 2}``.
"""
from __future__ import annotations

from typing import Annotated, Literal, Sequence, Union

import torch

from ..registry import Registry
from ..types import Ge, Positive
from . import losses
from .factorisations import Factorisation, factorisation
from .maps import align_sequences, to_student
from .scores import ChainScores, TreeScores
from .targets import ChainMarginals, SequenceTargets, TokenMarginals
from .temperature import temper

__all__ = ["OBJECTIVES", "KDObjective", "StructuralKD", "TokenKD", "PosteriorKD", "TopKKD"]

OBJECTIVES = Registry("kd objective")


Student = Union[str, Factorisation]


def _of(scores) -> Factorisation:
    """The factorisation a student's scores report."""
    return factorisation(scores.factorisation)


class KDObjective:
    """Base: a temperature T (KD terms carry T^2) applied locally (reference) or globally."""

    name = "base"

    def __init__(self, temperature: Positive = 1.0, temperature_mode: Literal["local", "global"] = "local"):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if temperature_mode not in ("local", "global"):
            raise ValueError(f"temperature_mode must be 'local' or 'global', got {temperature_mode!r}")
        self.temperature = float(temperature)
        self.temperature_mode = temperature_mode

    @property
    def teacher_temperature(self) -> float:
        return self.temperature if self.temperature_mode == "global" else 1.0

    def _local(self, m):
        return temper(m, self.temperature) if self.temperature_mode == "local" else m

    def config(self) -> dict:
        """What defines the targets (the teacher cache is keyed by it)."""
        return {"type": self.name, "temperature": self.temperature, "temperature_mode": self.temperature_mode}

    def targets(self, teacher, student_labels: Sequence[str], student: Student):
        """Targets over the substructures of a student with these labels and this factorisation (or its name)."""
        raise NotImplementedError

    def loss(self, student: ChainScores, targets) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"


@OBJECTIVES.register("structural")
class StructuralKD(KDObjective):
    """The exact structural objective: ``log Z_s - sum_u P_t(u) s_s(u)`` over the student's substructures u,
    with the teacher's marginals mapped onto them (every case: 1a, 1b, 2a, 2b, 3, 4)."""

    name = "structural"

    def __init__(self, temperature: Positive = 1.0, temperature_mode: Literal["local", "global"] = "local",
                 arc_marginals: str = "tree",
                 unknown_tags: str = "renormalize"):
        super().__init__(temperature, temperature_mode)
        self.arc_marginals = arc_marginals
        self.unknown_tags = unknown_tags

    def config(self):
        return {**super().config(), "arc_marginals": self.arc_marginals, "unknown_tags": self.unknown_tags}

    def targets(self, teacher, student_labels, student):
        student = factorisation(student)
        m = student.teacher_marginals(teacher, self.teacher_temperature, self.arc_marginals)
        options = {"unknown": self.unknown_tags} if isinstance(teacher, TreeScores) else {}
        return self._local(to_student(m, student_labels, student.name, **student.map_options(), **options))

    def loss(self, student, targets):
        return _of(student).structural_loss(student, targets, self.temperature)


@OBJECTIVES.register("token")
class TokenKD(KDObjective):
    """Token-level KD: the student's emission softmax against the teacher's emission softmax (a CRF teacher's
    transitions are ignored); T is applied to both sides."""

    name = "token"

    def targets(self, teacher, student_labels, student):
        if not isinstance(teacher, ChainScores):
            raise TypeError("token-level KD needs a tagger teacher (ChainScores)")
        m = teacher.without_special().emission_probs(self.temperature)
        return to_student(m, student_labels, "maxent")

    def loss(self, student, targets):
        return losses.token_cross_entropy(student, targets, self.temperature)


@OBJECTIVES.register("posterior")
class PosteriorKD(KDObjective):
    """Posterior KD (Wang et al. 2020a): the teacher's per-token marginals against the student's per-token
    marginals (a CRF student's forward-backward marginals, a MaxEnt student's softmax)."""

    name = "posterior"

    def targets(self, teacher, student_labels, student):
        # the per-token marginals of any teacher: those the generic (MaxEnt) view asks for
        m = factorisation("maxent").teacher_marginals(teacher, self.teacher_temperature, "tree")
        if isinstance(m, ChainMarginals):
            m = TokenMarginals(m.unary, m.lengths, labels=m.labels)
        return self._local(to_student(m, student_labels, "maxent"))

    def loss(self, student, targets):
        return _of(student).posterior_loss(student, targets, self.temperature)


@OBJECTIVES.register("topk")
class TopKKD(KDObjective):
    """Top-K KD: the student learns the teacher's k best sequences, weighted uniformly or (``weighted``) by
    their renormalised teacher probabilities ("Top-WK"). No temperature."""

    name = "topk"

    def __init__(self, k: Annotated[int, Ge(1)] = 10, weighted: bool = False):
        super().__init__(1.0, "local")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.weighted = int(k), bool(weighted)

    def config(self):
        return {"type": self.name, "k": self.k, "weighted": self.weighted}

    def targets(self, teacher, student_labels, student) -> SequenceTargets:
        if not isinstance(teacher, ChainScores):
            raise TypeError("Top-K KD needs a tagger teacher (ChainScores)")
        return align_sequences(teacher.without_special().topk(self.k, self.weighted), student_labels)

    def loss(self, student, targets):
        return _of(student).sequence_loss(student, targets)
