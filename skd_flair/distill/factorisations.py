"""Student factorisations: how a student's distribution factorises, and so what it learns from a teacher.

A student reports its factorisation by name (its scores' ``factorisation``; a model's ``kd_factorisation``).
The factorisation says which marginals it needs from a teacher (``teacher_marginals``; the maps in
``distill.maps`` then carry them onto its substructures), which loss each kind of target takes, and the
student's own per-token marginals for diagnostics. Objectives, annotation, the training plugin and the cache
look factorisations up here; none of them branches on what a student is. Registering one (a subclass with a
new ``name``) and its maps is how a new student structure joins (see docs/adding-a-pairing.md).
"""
from __future__ import annotations

from typing import Dict, Union

import torch

from . import losses
from .scores import ChainScores, TreeScores

__all__ = ["Factorisation", "FACTORISATIONS", "factorisation", "CRFStudent", "MaxEntStudent"]

FACTORISATIONS: Dict[str, "Factorisation"] = {}


class Factorisation:
    """Base. ``cache_key`` is what the teacher-target cache key records for this student space."""

    name = ""
    description = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("name"):
            FACTORISATIONS[cls.name] = cls()

    @property
    def cache_key(self):
        return self.name

    def map_options(self) -> dict:
        """Keyword arguments this student's maps take (a configured student's sizes)."""
        return {}

    def teacher_marginals(self, teacher, temperature: float, arc_marginals: str = "tree"):
        """The teacher's marginals at global temperature T, before they are mapped onto this student."""
        if isinstance(teacher, ChainScores):
            return teacher.without_special().marginals(temperature)
        if isinstance(teacher, TreeScores):
            return teacher.marginals(temperature, arc_marginals)
        if callable(getattr(teacher, "marginals", None)):
            return teacher.marginals(temperature)  # any other teacher output that knows its marginals
        raise TypeError(f"no marginals for teacher output {type(teacher).__name__}")

    def _unsupported(self, what: str):
        return ValueError(f"a {self.description or self.name} student has no {what} loss")

    def structural_loss(self, scores, targets, temperature: float) -> torch.Tensor:
        raise self._unsupported("structural")

    def posterior_loss(self, scores, targets, temperature: float) -> torch.Tensor:
        raise self._unsupported("posterior")

    def sequence_loss(self, scores, targets) -> torch.Tensor:
        raise self._unsupported("Top-K sequence")

    def token_log_probs(self, scores, temperature: float) -> torch.Tensor:
        """``[B, N, L]`` the student's log marginal of every token's label (0 on padding)."""
        raise NotImplementedError


def factorisation(value: Union[str, Factorisation]) -> Factorisation:
    """The registered factorisation of a name (or a factorisation itself)."""
    if isinstance(value, Factorisation):
        return value
    if value not in FACTORISATIONS:
        raise ValueError(f"unknown student factorisation {value!r}; known: {sorted(FACTORISATIONS)}")
    return FACTORISATIONS[value]


class CRFStudent(Factorisation):
    """A linear-chain CRF over tags: substructures are label pairs and first/last labels (ChainMarginals)."""

    name = "crf"
    description = "linear-chain CRF"

    @property
    def cache_key(self):
        return True  # what caches written before factorisations were types recorded (student_is_crf)

    def structural_loss(self, scores, targets, temperature):
        return losses.crf_structural_loss(scores, targets, temperature)

    def posterior_loss(self, scores, targets, temperature):
        return losses.crf_posterior_loss(scores, targets, temperature)

    def sequence_loss(self, scores, targets):
        return losses.crf_sequence_loss(scores, targets)

    def token_log_probs(self, scores, temperature):
        return scores.crf(temperature).log_marginals


class MaxEntStudent(Factorisation):
    """Independent per-token softmaxes: substructures are single labels (TokenMarginals)."""

    name = "maxent"
    description = "MaxEnt (per-token softmax)"

    @property
    def cache_key(self):
        return False  # see CRFStudent.cache_key

    def structural_loss(self, scores, targets, temperature):
        return losses.token_cross_entropy(scores, targets, temperature)

    posterior_loss = structural_loss

    def sequence_loss(self, scores, targets):
        return losses.token_sequence_loss(scores, targets)

    def token_log_probs(self, scores, temperature):
        return scores.log_softmax(temperature)
