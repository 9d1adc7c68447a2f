"""The factorised parsing student: a `DependencyTagger` whose output layer has one softmax over head offsets
and one over relations (``distill.offset_relation``) instead of one over every ``"{h - i}_{rel}"`` tag.

A tag's log probability is the sum of its offset's and its relation's, so decoding into trees (MST, Eisner,
top-3, none), evaluation and prediction are the `DependencyTagger`'s own. The output layer shrinks from the
number of (offset, relation) pairs seen in training (hundreds, most of them rare) to offsets + relations.
"""
from __future__ import annotations

from typing import List, Optional

import flair
import torch

from ..distill.head_relation import HeadRelationScores, HeadRelationStudent, head_labels
from ..distill.maps import parse_offset_tag
from ..distill.offset_relation import OffsetRelationScores, OffsetRelationStudent, offset_label
from .dependency_tagger import DependencyTagger
from .offset_tags import _fallback_relation, tree_heads

__all__ = ["FactorisedDependencyTagger"]


class FactorisedDependencyTagger(DependencyTagger):
    """`DependencyTagger`'s arguments; the tag dictionary (`make_tag_dictionary`) names the offsets and
    relations the student can predict (every offset and every relation of its tags).

    Args:
        head_relations: predict a word's relation from its own and its head's BiLSTM states (relation logits
            ``dep_d + head_h``, ``distill.head_relation``) instead of from its own alone.
        head_offsets: (with head_relations) a word's offset logits also add a part from the word at each offset
            (its column for that offset: how good a head it is for a dependent that far away).
    """

    factorised = True

    def __init__(self, *args, head_relations: bool = False, head_offsets: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if head_offsets and not head_relations:
            raise ValueError("head_offsets needs head_relations")
        self.head_relations, self.head_offsets = bool(head_relations), bool(head_offsets)
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
        if self.head_relations and not self.relations:
            raise ValueError("head_relations needs relation tags (the tag dictionary has none)")
        columns = len(self.offsets) * (2 if self.head_offsets else 1) + \
            len(self.relations) * (2 if self.head_relations else 1)
        self.linear = torch.nn.Linear(self.linear.in_features, columns, device=flair.device)
        self._pair_cache = None  # `_pairs`, built on first decoding

    @property
    def label_names(self) -> List[str]:
        """The output columns: ``"@{offset}"`` per offset, then the relations (the KD student space), then with
        `head_relations` ``"^{relation}"`` (the head parts)."""
        if self.head_relations:
            return head_labels(self.offsets, self.relations, self.head_offsets)
        return [offset_label(o) for o in self.offsets] + list(self.relations)

    @property
    def kd_factorisation(self) -> str:
        return HeadRelationStudent.name if self.head_relations else OffsetRelationStudent.name

    def chain_scores(self, features: torch.Tensor, lengths: torch.Tensor):
        cls = HeadRelationScores if self.head_relations else OffsetRelationScores
        return cls(features, lengths.to(features.device), self.label_names)

    def _gold_loss(self, scores: OffsetRelationScores, tags: torch.Tensor) -> torch.Tensor:
        """Per-sentence negative log-likelihood of the gold offsets and relations (a gold tag outside the
        dictionary, ``<unk>``, teaches nothing)."""
        off_col = self._tag_offset.to(tags.device)[tags]
        if self.head_relations:  # only the gold head's relation softmax, not every offset's
            logp_o = scores.log_probs_offsets()
            logp_r = scores.relation_log_probs_at(off_col)
        else:
            logp_o, logp_r = scores.log_probs()
        total = logp_o.new_zeros(logp_o.shape[:2])
        for logp, col in ((logp_o, off_col), (logp_r, self._tag_relation.to(tags.device)[tags])):
            picked = logp.gather(-1, col.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            total = total - torch.where((col >= 0) & scores.mask, picked, picked.new_zeros(()))
        return total.sum(1)

    def tag_log_probs(self, scores: OffsetRelationScores) -> torch.Tensor:
        """``[B, N, tags]`` log P(offset) + log P(relation) of every dictionary tag (-inf for ``<unk>``)."""
        logp_o, logp_r = scores.log_probs()
        off, rel = self._tag_offset.to(logp_o.device), self._tag_relation.to(logp_o.device)
        if self.head_relations:  # [B, N, K, R] -> each tag's (offset, relation) entry
            rel_part = logp_r.flatten(2)[..., off.clamp(min=0) * logp_r.shape[-1] + rel.clamp(min=0)]
        else:
            rel_part = logp_r[..., rel.clamp(min=0)] if self.relations else 0.0
        combined = logp_o[..., off.clamp(min=0)] + rel_part
        usable = (off >= 0) & ((rel >= 0) | (not self.relations))
        return combined.masked_fill(~usable, float("-inf"))

    def _trees(self, scores: OffsetRelationScores, repair: str, log_probs: Optional[torch.Tensor] = None,
               probabilities: bool = False):
        """MST and Eisner trees straight from the two softmaxes: a head's mass is P(offset) times the summed
        probability of the relations the dictionary pairs with that offset, one ``[B, N, R] @ [R, O]`` product,
        where the tag path builds, exponentiates and scatters every (offset, relation) tag (hundreds a word; it
        dominated prediction). The same trees and labels as `decode_offset_tags` over `tag_log_probs` up to
        float rounding; other repairs take that path."""
        if repair not in ("mst", "eisner"):
            return super()._trees(scores, repair, log_probs, probabilities)
        if self.head_relations:  # per offset, the mass of the relations paired with it given that head
            logp_o, logp_r = scores.log_probs_offsets(), None
            pairs, offsets, col_of, low, is_root = self._pairs(logp_o.device)
            relation_mass = scores.paired_relation_mass(pairs)
        else:
            logp_o, logp_r = scores.log_probs()
            pairs, offsets, col_of, low, is_root = self._pairs(logp_o.device)
            relation_mass = logp_r.double().exp() @ pairs.double().t() if self.relations else pairs.double().t()
        lengths = scores.lengths.cpu()
        batch, n, _ = logp_o.shape
        mass_o = logp_o.double().exp() * relation_mass  # [B, N, O]
        words = torch.arange(1, n + 1, device=mass_o.device).view(1, n, 1)
        heads = words + offsets.view(1, 1, -1)
        ok = (heads >= 0) & (heads <= scores.lengths.view(-1, 1, 1)) & pairs.any(1).view(1, 1, -1)
        mass = mass_o.new_zeros(batch, n, n + 1).scatter_add_(
            2, heads.clamp(0, n).expand(batch, -1, -1), torch.where(ok, mass_o, mass_o.new_zeros(())))
        arcs = mass.new_full((batch, n + 1, n + 1), float("-inf"))
        arcs[:, :, 1:] = torch.log(mass).transpose(1, 2)
        tree = tree_heads(arcs.cpu(), lengths, repair)[:, 1:].to(logp_o.device)  # [B, N], -1 on padding
        # each word's relation for its head: the best relation the dictionary pairs with that offset (only the
        # root relation on an arc from ROOT, and never elsewhere), scored as the tag path scores it
        step = tree - words.view(1, n)
        col = torch.where((step >= low) & (step < low + len(col_of)), col_of[(step - low).clamp(0, len(col_of) - 1)],
                          torch.full_like(step, -1))
        if self.relations:
            allowed = pairs[col.clamp(min=0)] & (col >= 0).unsqueeze(-1)  # [B, N, R]
            if self.root_relation:
                allowed &= torch.where((tree == 0).unsqueeze(-1), is_root, ~is_root)
            # the tag path's float32 sums
            at_head = scores.relation_log_probs_at(col) if self.head_relations else logp_r
            tag = logp_o.gather(-1, col.clamp(min=0).unsqueeze(-1)) + at_head
            best = tag.masked_fill(~allowed, float("-inf")).max(-1)
            top, rel = best.values.double(), best.indices
        else:
            top = logp_o.gather(-1, col.clamp(min=0).unsqueeze(-1)).squeeze(-1).double()
            top = top.masked_fill(col < 0, float("-inf"))
            rel = torch.zeros_like(col)
        found = torch.isfinite(top)
        top, rel, found, tree = top.exp().tolist(), rel.tolist(), found.tolist(), tree.tolist()
        fallback = None
        out = []
        for b, length in enumerate(lengths.tolist()):
            hs, rels, probs = tree[b][:length], [], []
            for i, h in enumerate(hs, start=1):
                if found[b][i - 1] and self.relations:
                    rels.append(self.relations[rel[b][i - 1]])
                    probs.append(top[b][i - 1])
                    continue
                if fallback is None:  # an arc no tag names (rare): the tag path's fallback relation
                    fallback = (self.tag_log_probs(scores) if log_probs is None else log_probs).double().cpu()
                rels.append(_fallback_relation(self.codec, fallback[b], i, h))
                probs.append(top[b][i - 1] if found[b][i - 1] else 0.0)
            out.append((hs, rels, probs) if probabilities else (hs, rels))
        return out

    def _pairs(self, device):
        """The (offset, relation) pairs of the dictionary's usable tags ``[O, R]`` (``[O, 1]`` without relations),
        the offsets ``[O]``, a lookup from offset value ``v`` to its column (``col_of[v - low]``, -1 if none), and
        which relations are the root relation ``[R]``."""
        if self._pair_cache is None or self._pair_cache[0].device != device:
            pairs = torch.zeros(len(self.offsets), max(len(self.relations), 1), dtype=torch.bool)
            for k in range(len(self.tag_names)):
                o, r = int(self._tag_offset[k]), int(self._tag_relation[k])
                if bool(self.codec.usable[k]) and o >= 0 and (r >= 0 or not self.relations):
                    pairs[o, max(r, 0)] = True
            offsets = torch.tensor(self.offsets, dtype=torch.long)
            low = min(self.offsets, default=0)
            col_of = torch.full((max(self.offsets, default=0) - low + 1,), -1, dtype=torch.long)
            col_of[offsets - low] = torch.arange(len(self.offsets))
            is_root = torch.tensor([r == self.root_relation for r in self.relations], dtype=torch.bool)
            self._pair_cache = (pairs.to(device), offsets.to(device), col_of.to(device), low, is_root.to(device))
        return self._pair_cache

    def _get_state_dict(self):
        return {**super()._get_state_dict(), "factorised": True, "head_relations": self.head_relations,
                "head_offsets": self.head_offsets}

    @classmethod
    def _init_model_with_state_dict(cls, state, **kwargs):
        kwargs.setdefault("head_relations", state.get("head_relations", False))
        kwargs.setdefault("head_offsets", state.get("head_offsets", False))
        return super()._init_model_with_state_dict(state, **kwargs)
