"""The one KD training path of every Flair student: teacher targets from sentence metadata, the objective's
loss on the student's scores, the mix with the gold loss, and the per-batch diagnostics the plugin logs.

A student model derives from `LearnsFromTeacher`, names its factorisation (``kd_factorisation``) and calls
``_mixed_loss`` from its ``forward_loss`` with its scores and per-sentence gold losses.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from flair.data import Sentence

from ..distill import OBJECTIVES, KDObjective, mix_losses
from ..distill.batching import collate_targets, piece_length
from ..distill.diagnostics import token_diagnostics
from ..distill.factorisations import Factorisation, factorisation

KD_TARGETS = "skd_targets"  # sentence metadata: this sentence's teacher targets (see distill.batching)
UNLABELLED = "skd_unlabelled"  # sentence metadata: True when the sentence has no gold labels

__all__ = ["LearnsFromTeacher", "KD_TARGETS", "UNLABELLED", "is_unlabelled", "build_objective"]


def is_unlabelled(sentence: Sentence) -> bool:
    return bool(sentence.has_metadata(UNLABELLED) and sentence.get_metadata(UNLABELLED))


def build_objective(spec) -> Optional[KDObjective]:
    if spec is None or isinstance(spec, KDObjective):
        return spec
    return OBJECTIVES.build(spec, where="kd_objective")


class LearnsFromTeacher:
    """Mixin for students. Attributes: ``kd_objective`` (None: no KD), ``kd_weight`` (lambda of
    ``lambda * L_KD + (1 - lambda) * L_gold``, set by the plugin), ``kd_stats`` (the last batch's diagnostics)."""

    kd_objective: Optional[KDObjective] = None
    kd_weight: float = 1.0
    kd_stats: dict = {}

    @property
    def kd_factorisation(self) -> str:
        """The name of this student's factorisation (``distill.factorisations``)."""
        raise NotImplementedError

    @property
    def factorisation(self) -> Factorisation:
        return factorisation(self.kd_factorisation)

    def _targets(self, sentences: List[Sentence], device, dtype):
        """The batch's teacher targets, in sentence order, or None when no sentence carries any."""
        has_targets = [s.has_metadata(KD_TARGETS) for s in sentences]
        if not any(has_targets):
            return None
        if not all(has_targets):
            raise ValueError("some sentences of this batch carry teacher targets and some do not; annotate "
                             "every training sentence (see skd_flair.training.annotate)")
        if self.kd_objective is None:
            raise ValueError("sentences carry teacher targets but the model has no kd_objective")
        pieces = [s.get_metadata(KD_TARGETS) for s in sentences]
        for s, piece in zip(sentences, pieces):
            if piece_length(piece) != len(s):
                raise ValueError(f"teacher targets for {piece_length(piece)} tokens on a sentence of {len(s)}: "
                                 f"{s.to_tokenized_string()[:80]!r}")
        return collate_targets(pieces, self.label_names, device=device, dtype=dtype)

    def _mixed_loss(self, sentences: List[Sentence], scores, gold: torch.Tensor, device, dtype) -> torch.Tensor:
        """Per-sentence loss: gold alone without targets, else the objective's KD loss mixed with it (an
        unlabelled sentence learns from the teacher only)."""
        labelled = torch.tensor([not is_unlabelled(s) for s in sentences], device=device)
        targets = self._targets(sentences, device, dtype)
        if targets is None:
            if not bool(labelled.all()):
                raise ValueError("an unlabelled sentence has no teacher targets: it has nothing to learn from")
            self.kd_stats = {}
            return gold
        kd = self.kd_objective.loss(scores, targets)
        self._record_stats(scores, targets, kd, gold, labelled)
        return mix_losses(kd, gold, self.kd_weight, labelled)

    @torch.no_grad()
    def _record_stats(self, scores, targets, kd, gold, labelled):
        """Per-batch KD diagnostics for the plugin: losses, token KL, teacher entropy, argmax agreement."""
        log_probs = self.factorisation.token_log_probs(scores, self.kd_objective.temperature)
        self.kd_stats = {"kd_loss": float(kd.sum()), "gold_loss": float(gold[labelled].sum()),
                         "sentences": len(kd), "labelled_sentences": int(labelled.sum()),
                         **token_diagnostics(log_probs, targets.mask, targets)}
