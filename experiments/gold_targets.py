"""Teacher targets that are the gold labels themselves: a perfect, certain "teacher" for a diagnostic.

With one-hot marginals on the gold tag sequence, a CRF student's structural KD loss is
``log Z_s - s_s(gold)``, the gold negative log-likelihood, so KD mixed with gold at any weight is plain training
on the same loss. A student trained this way separates what the KD code path does (batching targets, the mix,
the plugin's hooks) from what a real teacher's targets do: if it matches plain training and the real teacher's
student does not, the cost is in the teacher's targets, not in the machinery.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from flair.data import Sentence

from skd_flair.distill import OBJECTIVES
from skd_flair.distill.targets import ChainMarginals
from skd_flair.models.kd_student import is_unlabelled
from skd_flair.training.annotate import TeacherTargets
from skd_flair.training.cache import compress, corpus_digest, digest, sentence_key

__all__ = ["gold_targets"]


def gold_targets(sentences: Sequence[Sentence], student, objective: Dict) -> TeacherTargets:
    """One-hot chain marginals of each sentence's gold tags, in `student`'s label space (CRF students only)."""
    if getattr(student, "kd_factorisation", None) != "crf":
        raise ValueError(f"gold targets are made for linear-chain CRF students, not {type(student).__name__} "
                         f"({getattr(student, 'kd_factorisation', None)})")
    objective = OBJECTIVES.build(objective, where="objective")
    if objective.config().get("type") != "structural":
        raise ValueError("gold targets stand in for a structural-KD teacher only")
    unlabelled = sum(is_unlabelled(s) for s in sentences)
    if unlabelled:
        raise ValueError(f"{unlabelled} unlabelled sentences have no gold labels to make targets of")
    labels = list(student.label_names)
    entries = {}
    with torch.no_grad():
        for sentence in sentences:
            if not len(sentence):
                continue
            tags = student._gold_tags([sentence], len(sentence))[0].cpu()
            unary = torch.nn.functional.one_hot(tags, len(labels)).double()
            pairwise = unary[:-1, :, None] * unary[1:, None, :]
            piece, = ChainMarginals(unary[None], pairwise[None], torch.tensor([len(sentence)]),
                                    labels=labels).split()
            entries[sentence_key(sentence)] = compress(piece)
    config = objective.config()
    key = digest("gold-targets", config, labels, corpus_digest(list(entries)))
    return TeacherTargets(entries, labels, student.kd_factorisation, config, key,
                          {"sentences": len(entries), "gold": True})
