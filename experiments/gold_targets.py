"""One-hot teacher targets for diagnostics: the gold labels themselves, or the teacher's best path.

With one-hot marginals on a tag sequence y, a CRF student's structural KD loss is ``log Z_s - s_s(y)``, the
negative log-likelihood of y. On the gold labels, KD mixed with gold at any weight is plain training on the same
loss: a student trained this way separates what the KD code path does (batching targets, the mix, the plugin's
hooks) from what a real teacher's targets do. On the teacher's Viterbi path, it is the teacher's hard decisions
without its uncertainty: between the two, the cost of the teacher's errors; between it and the teacher's exact
marginals, the cost (or gain) of the probability mass the teacher spreads.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from flair.data import Sentence

from skd_flair.distill import OBJECTIVES
from skd_flair.distill.targets import ChainMarginals
from skd_flair.models.eval_loop import eval_mode
from skd_flair.models.kd_student import is_unlabelled
from skd_flair.training.annotate import TeacherTargets
from skd_flair.training.cache import compress, corpus_digest, digest, fingerprint_model, sentence_key

__all__ = ["gold_targets", "teacher_path_targets", "path_targets"]


def _check(student, objective: Dict):
    if getattr(student, "kd_factorisation", None) != "crf":
        raise ValueError(f"one-hot path targets are made for linear-chain CRF students, not {type(student).__name__} "
                         f"({getattr(student, 'kd_factorisation', None)})")
    objective = OBJECTIVES.build(objective, where="objective")
    if objective.config().get("type") != "structural":
        raise ValueError("one-hot path targets stand in for a structural-KD teacher only")
    return objective.config()


def path_targets(sentences: Sequence[Sentence], paths: Sequence[torch.Tensor], student, config: Dict,
                 source: str) -> TeacherTargets:
    """One-hot chain marginals of one tag path per sentence (indices into `student`'s labels)."""
    labels = list(student.label_names)
    entries = {}
    for sentence, tags in zip(sentences, paths):
        unary = torch.nn.functional.one_hot(tags.cpu(), len(labels)).double()
        pairwise = unary[:-1, :, None] * unary[1:, None, :]
        piece, = ChainMarginals(unary[None], pairwise[None], torch.tensor([len(sentence)]), labels=labels).split()
        entries[sentence_key(sentence)] = compress(piece)
    key = digest(source, config, labels, corpus_digest(list(entries)))
    return TeacherTargets(entries, labels, student.kd_factorisation, config, key,
                          {"sentences": len(entries), "one_hot": source})


def gold_targets(sentences: Sequence[Sentence], student, objective: Dict) -> TeacherTargets:
    """One-hot chain marginals of each sentence's gold tags, in `student`'s label space (CRF students only)."""
    config = _check(student, objective)
    unlabelled = sum(is_unlabelled(s) for s in sentences)
    if unlabelled:
        raise ValueError(f"{unlabelled} unlabelled sentences have no gold labels to make targets of")
    sentences = [s for s in sentences if len(s)]
    with torch.no_grad():
        paths = [student._gold_tags([s], len(s))[0] for s in sentences]
    return path_targets(sentences, paths, student, config, "gold-targets")


def teacher_path_targets(teacher, sentences: Sequence[Sentence], student, objective: Dict,
                         batch_size: int = 32) -> TeacherTargets:
    """One-hot chain marginals of the teacher's best path (Viterbi for a CRF) of each sentence, mapped onto `student`'s labels
    by name (the teacher must know every label it predicts under the same name)."""
    config = _check(student, objective)
    index = {name: i for i, name in enumerate(student.label_names)}
    sentences = [s for s in sentences if len(s)]
    paths: List[torch.Tensor] = []
    with eval_mode(teacher):
        for i in range(0, len(sentences), batch_size):
            batch = sentences[i:i + batch_size]
            scores = teacher.teacher_scores(batch)
            best = scores.crf().argmax if scores.is_crf else scores.emissions.argmax(-1)
            for b, sentence in enumerate(batch):
                names = [teacher.label_names[j] for j in best[b, :len(sentence)].tolist()]
                missing = sorted({n for n in names if n not in index})
                if missing:
                    raise ValueError(f"the teacher predicts labels the student does not have: {missing}")
                paths.append(torch.tensor([index[n] for n in names]))
    return path_targets(sentences, paths, student, config, f"teacher-path-{fingerprint_model(teacher)}")
