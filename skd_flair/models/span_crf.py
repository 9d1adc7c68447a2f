"""A span-CRF (semi-Markov CRF) NER student: the biaffine span scorer of `BiaffineSpanTagger` read as labelled
segments, plus transitions between neighbouring segments' labels, trained by exact ``log Z - score(gold)`` and
by structural KD from a BIOES CRF teacher or a span teacher (``distill.segments``).

Every token is covered by one segment: an entity span (up to `max_width` tokens) or a one-token ``O``
segment. A span's score is its type logit minus its None logit, an ``O`` segment scores 0, and
``transitions[a, a']`` scores label a followed by label a'.
"""
from __future__ import annotations

from typing import List, Tuple, cast

import flair
import torch
from flair.data import Dictionary, Sentence
from flair.embeddings import TokenEmbeddings

from ..distill.segments import OUTSIDE, SegmentScores, SpanCRFStudent, with_outside
from ..structs.semi_markov import SemiMarkovCRF, band_from_spans
from .kd_student import LearnsFromTeacher, build_objective
from .span_ner import BiaffineSpanTagger

__all__ = ["SpanCRFTagger"]


class SpanCRFTagger(LearnsFromTeacher, BiaffineSpanTagger):
    """`BiaffineSpanTagger`'s arguments (its `objective` is always the structured one) and:

    Args:
        max_width: the widest entity segment (required: a semi-Markov model's cost grows with it).
        kd_objective: the KD objective or its config (structural KD; saved with the model).
    """

    def __init__(self, embeddings: TokenEmbeddings, label_dictionary: Dictionary, label_type: str,
                 max_width: int = 10, kd_objective=None, **kwargs):
        kwargs.pop("objective", None)
        super().__init__(embeddings, label_dictionary, label_type, max_width=max_width, objective="structured",
                         **kwargs)
        size = len(self.type_names) + 1
        self.transitions = torch.nn.Parameter(torch.zeros(size, size, device=flair.device))
        self.kd_objective = build_objective(kd_objective)
        self.kd_weight = 1.0
        self.kd_stats = {}

    @property
    def label_names(self) -> List[str]:
        """The segment labels: the entity types, then ``O``."""
        return list(self.type_names) + [OUTSIDE]

    @property
    def kd_factorisation(self) -> str:
        return SpanCRFStudent.name

    @property
    def factorisation(self) -> SpanCRFStudent:
        return SpanCRFStudent(self.max_width)

    def segment_scores(self, logits: torch.Tensor, lengths: torch.Tensor) -> SegmentScores:
        band = band_from_spans(self.relative_scores(logits), self.max_width)  # [B, N, W, E]
        return SegmentScores(with_outside(band), self.transitions, lengths.to(logits.device),
                             self.label_names)

    def teacher_scores(self, sentences: List[Sentence]):
        raise NotImplementedError("a span-CRF model is a student here: no map takes its segment marginals to "
                                  "another student yet; teach with a BIOES tagger or a span_ner model")

    def _segmentation(self, sentence: Sentence) -> List[Tuple[int, int, int]]:
        spans = self._gold_spans(sentence, structured=True)
        covered = {m for i, j, _ in spans for m in range(i, j + 1)}
        outside = len(self.type_names)
        return sorted(spans + [(m, m, outside) for m in range(len(sentence)) if m not in covered])

    def _loss(self, logits, lengths, sentences, objective=None) -> torch.Tensor:
        """``[B]`` negative log-likelihood of the gold segmentations."""
        crf = self.segment_scores(logits, lengths).structure()
        return crf.log_partition - crf.score([self._segmentation(s) for s in sentences])

    def forward_loss(self, sentences: List[Sentence]) -> Tuple[torch.Tensor, int]:
        sentences = [s for s in sentences if len(s) > 0]
        if not sentences:
            return torch.tensor(0.0, device=flair.device, requires_grad=True), 0
        logits, lengths = self.span_logits(sentences)
        scores = self.segment_scores(logits, lengths)
        gold = self._loss(logits, lengths, sentences)
        loss = self._mixed_loss(sentences, scores, gold, logits.device, logits.dtype)
        return loss.sum(), int(lengths.sum())

    def structure(self, logits: torch.Tensor, lengths: torch.Tensor) -> SemiMarkovCRF:
        return self.segment_scores(logits, lengths).structure()

    def _add_predictions(self, batch: List[Sentence], crf: SemiMarkovCRF, label_name: str, all_classes: bool):
        best, marginals = crf.decode(), crf.marginals.cpu()
        token_probs = crf.token_marginals.cpu() if all_classes else None
        for b, sentence in enumerate(batch):
            sentence.remove_labels(label_name)
            for i, j, a in best[b]:
                if a < len(self.type_names):
                    sentence[i:j + 1].add_label(label_name, value=self.type_names[a],
                                                score=float(marginals[b, j, j - i, a]))
            if token_probs is not None:
                for m, token in enumerate(sentence.tokens):
                    token.add_tags_proba_dist(label_name, [flair.data.Label(token, name, float(p)) for name, p
                                                           in zip(self.label_names, token_probs[b, m].tolist())])

    def _get_state_dict(self):
        return {**super()._get_state_dict(),
                "kd_objective": None if self.kd_objective is None else self.kd_objective.config()}

    @classmethod
    def _init_model_with_state_dict(cls, state, **kwargs):
        kwargs.setdefault("kd_objective", state.get("kd_objective"))
        return super()._init_model_with_state_dict(state, **kwargs)

    @classmethod
    def load(cls, model_path) -> "SpanCRFTagger":
        return cast("SpanCRFTagger", super().load(model_path=model_path))
