"""Teacher targets of several teachers read as one: an ensemble or per-corpus routing (``TeacherMixture``).

Each teacher's targets are annotated and cached on their own (``annotate``); a sentence's targets are the
weighted mean of the pieces of the teachers that hold it (``skd_flair.distill.mixture``), formed when the
plugin builds a batch. Every teacher holding every sentence is an ensemble; each sentence held by the teacher
of its corpus (a per-language teacher annotating only its language) is routing; any overlap in between mixes
the teachers that hold the sentence, their weights renormalised. Top-K targets only route.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from flair.data import Sentence

from ..distill import OBJECTIVES, KDObjective
from ..distill.mixture import mix_pieces, normalise_weights
from .annotate import TeacherTargets
from .cache import digest, sentence_key

__all__ = ["TeacherMixture"]


class TeacherMixture:
    """The interface of ``TeacherTargets`` (``piece``, ``labels``, ``student``, ``build_objective``,
    ``key``, ``stats``) over several teachers' targets with weights."""

    def __init__(self, members: Sequence[Tuple[TeacherTargets, float]]):
        if not members:
            raise ValueError("a teacher mixture needs at least one teacher's targets")
        self.members: List[TeacherTargets] = [t for t, _ in members]
        self.weights = normalise_weights([w for _, w in members])
        first = self.members[0]
        for other in self.members[1:]:
            if other.labels != first.labels or other.student != first.student:
                raise ValueError("every teacher's targets must be made for the same student (labels and factorisation)")
            if other.objective != first.objective:  # one loss, one temperature for the whole mixture
                raise ValueError(f"every teacher's targets must be made with one objective, got {first.objective} "
                                 f"and {other.objective}")
        self.labels, self.student, self.objective = first.labels, first.student, first.objective
        self.key = digest("teacher-mixture", [t.key for t in self.members], self.weights)
        self.stats = {"teachers": [dict(t.stats, key=t.key, weight=w) for t, w in zip(self.members, self.weights)]}
        self._keys = set().union(*(set(t.entries) for t in self.members))
        if len(self.members) > 1 and first.objective.get("type") == "topk":
            self._check_routed()

    def _check_routed(self):
        """Top-K lists are not marginals and do not mix, but routed (every sentence held by one teacher only,
        as per-language teachers annotate) each sentence simply keeps its own teacher's list: the predecessor
        paper's multi-teacher Top-K."""
        shared = sum(len(t.entries) for t in self.members) - len(self._keys)
        if shared:
            raise ValueError(f"Top-K targets do not mix exactly, and {shared} sentence(s) are held by several "
                             "teachers: route each sentence to one teacher, or use structural, posterior or "
                             "token KD with several teachers")

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, sentence) -> bool:
        return sentence_key(sentence) in self._keys

    def piece(self, sentence: Sentence) -> dict:
        held = [(t, w) for t, w in zip(self.members, self.weights) if sentence in t]
        if not held:
            raise KeyError(f"no teacher holds targets for sentence {sentence.to_tokenized_string()[:80]!r}")
        if len(held) == 1:
            return held[0][0].piece(sentence)
        return mix_pieces([t.piece(sentence) for t, _ in held], [w for _, w in held])

    def build_objective(self) -> KDObjective:
        return OBJECTIVES.build(self.objective, where="teacher targets")
