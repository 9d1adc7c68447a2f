"""The factorised parsing student: a `DependencyTagger` whose output layer has one softmax over head offsets
and one over relations (``distill.offset_relation``) instead of one over every ``"{h - i}_{rel}"`` tag.

A tag's log probability is the sum of its offset's and its relation's, so decoding into trees (MST, Eisner,
top-3, none), evaluation and prediction are the `DependencyTagger`'s own. The output layer shrinks from the
number of (offset, relation) pairs seen in training (hundreds, most of them rare) to offsets + relations.
"""
from __future__ import annotations

from typing import List

import flair
import torch

from ..distill.maps import parse_offset_tag
from ..distill.offset_relation import OffsetRelationScores, OffsetRelationStudent, offset_label
from .dependency_tagger import DependencyTagger

__all__ = ["FactorisedDependencyTagger"]


class FactorisedDependencyTagger(DependencyTagger):
    """`DependencyTagger`'s arguments; the tag dictionary (`make_tag_dictionary`) names the offsets and
    relations the student can predict (every offset and every relation of its tags)."""

    factorised = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        parsed = [parse_offset_tag(tag) for tag in self.tag_names]
        self.offsets = sorted({p[0] for p in parsed if p is not None})
        self.relations = list(dict.fromkeys(p[1] for p in parsed if p is not None and p[1] is not None))
        offset_col = {o: k for k, o in enumerate(self.offsets)}
        relation_col = {r: k for k, r in enumerate(self.relations)}
        # per dictionary tag: its offset column and relation column (-1: a tag that is no (offset, relation))
        self._tag_offset = torch.tensor([offset_col[p[0]] if p is not None else -1 for p in parsed],
                                        device=flair.device)
        self._tag_relation = torch.tensor([relation_col.get(p[1], -1) if p is not None else -1 for p in parsed],
                                          device=flair.device)
        self.linear = torch.nn.Linear(self.linear.in_features, len(self.offsets) + len(self.relations),
                                      device=flair.device)

    @property
    def label_names(self) -> List[str]:
        """The output columns: ``"@{offset}"`` per offset, then the relations (the KD student space)."""
        return [offset_label(o) for o in self.offsets] + list(self.relations)

    @property
    def kd_factorisation(self) -> str:
        return OffsetRelationStudent.name

    def chain_scores(self, features: torch.Tensor, lengths: torch.Tensor) -> OffsetRelationScores:
        return OffsetRelationScores(features, lengths.to(features.device), self.label_names)

    def _gold_loss(self, scores: OffsetRelationScores, tags: torch.Tensor) -> torch.Tensor:
        """Per-sentence negative log-likelihood of the gold offsets and relations (a gold tag outside the
        dictionary, ``<unk>``, teaches nothing)."""
        logp_o, logp_r = scores.log_probs()
        total = logp_o.new_zeros(logp_o.shape[:2])
        for logp, cols in ((logp_o, self._tag_offset.to(tags.device)), (logp_r, self._tag_relation.to(tags.device))):
            col = cols[tags]
            picked = logp.gather(-1, col.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            total = total - torch.where((col >= 0) & scores.mask, picked, picked.new_zeros(()))
        return total.sum(1)

    def tag_log_probs(self, scores: OffsetRelationScores) -> torch.Tensor:
        """``[B, N, tags]`` log P(offset) + log P(relation) of every dictionary tag (-inf for ``<unk>``)."""
        logp_o, logp_r = scores.log_probs()
        off, rel = self._tag_offset.to(logp_o.device), self._tag_relation.to(logp_o.device)
        combined = logp_o[..., off.clamp(min=0)] + (logp_r[..., rel.clamp(min=0)] if self.relations else 0.0)
        usable = (off >= 0) & ((rel >= 0) | (not self.relations))
        return combined.masked_fill(~usable, float("-inf"))

    def _log_probs(self, batch):
        features, lengths = self._features(batch)
        scores = self.chain_scores(features, lengths)
        return scores, self.tag_log_probs(scores)

    def _get_state_dict(self):
        return {**super()._get_state_dict(), "factorised": True}
