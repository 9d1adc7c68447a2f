"""Dependency parsing as sequence labelling (Strzyz et al. 2019; the student of cases 1b and 2b).

A MaxEnt (per-token softmax) `DistillableTagger` learns the offset tags ``"{h - i}_{rel}"`` of `offset_tags`,
and its predictions are decoded into trees there (the repair: MST, Eisner, the reference's top-3 heuristic,
or none). Tags never seen in training never crash anything: with ``<unk>`` in the tag dictionary an unseen
gold tag is ``<unk>``'s, without it the nearest known offset with the same relation.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import flair
import torch
from flair.data import Dictionary, Sentence
from flair.embeddings import TokenEmbeddings

from .dependency_eval import EvaluatesTrees, gold_tree, main_metric_name
from .eval_loop import eval_mode, inference_batches
from .offset_tags import (DEFAULT_TAG_TYPE, REPAIRS, OffsetTagCodec, decode_offset_tags, encode_corpus,
                          encode_sentence, make_tag_dictionary, offset_tag)
from .tagger import DistillableTagger

__all__ = ["DependencyTagger", "OffsetTagCodec", "DEFAULT_TAG_TYPE", "REPAIRS", "offset_tag", "encode_sentence",
           "encode_corpus", "make_tag_dictionary", "decode_offset_tags"]


class DependencyTagger(EvaluatesTrees, DistillableTagger):
    """A MaxEnt `DistillableTagger` over offset tags that predicts dependency trees.

    Args:
        embeddings, tag_dictionary: as for `DistillableTagger` (`make_tag_dictionary` builds the tags).
        tag_type: the token label type of the offset tags (derived from ``head_id`` and the relation when a
            token lacks it, so encoding the corpus beforehand is optional).
        repair: how `predict` and `evaluate` turn tags into trees (``mst``, ``eisner``, ``top3``, ``none``).
        relation_type: the token label type of relations (gold for evaluation, written by `predict`).
        root_relation: the relation of the word attached to ROOT.
        main_metric: `evaluate`'s main score (``las``, ``uas``, ``las_nopunct``, ``uas_nopunct``).
        Other arguments go to `DistillableTagger` / Flair's `SequenceTagger`; ``use_crf`` must stay False.
    """

    def __init__(self, embeddings: TokenEmbeddings, tag_dictionary: Dictionary, tag_type: str = DEFAULT_TAG_TYPE,
                 repair: str = "mst", relation_type: str = "dependency", root_relation: Optional[str] = "root",
                 main_metric: str = "las", **kwargs):
        if kwargs.get("use_crf", False):
            raise ValueError("DependencyTagger is a MaxEnt (per-token softmax) tagger: use_crf must be False")
        if repair not in REPAIRS:
            raise ValueError(f"repair must be one of {REPAIRS}, got {repair!r}")
        main_metric_name(None, main_metric)
        kwargs["use_crf"] = False
        super().__init__(embeddings, tag_dictionary, tag_type, **kwargs)
        self.repair, self.relation_type = repair, relation_type
        self.root_relation, self.main_metric = root_relation, main_metric
        self.codec = OffsetTagCodec(self.tag_names, root_relation)

    @property
    def tag_names(self) -> List[str]:
        """The offset tags of the tag dictionary (the output columns, unless the student is factorised)."""
        return self.label_dictionary.get_items()

    # ------------------------------------------------------------------ gold tags
    def _get_gold_labels(self, sentences: List[Sentence]) -> List[str]:
        labels = []
        for sentence in sentences:
            heads, rels = None, None
            for token in sentence:
                own = token.get_labels(self.tag_type)
                if own:
                    labels.append(own[0].value)
                    continue
                if heads is None:
                    heads, rels = gold_tree(sentence, self.relation_type)
                h, r = heads[token.idx - 1], rels[token.idx - 1]
                labels.append(offset_tag(token.idx, h, r) if h is not None and r is not None else "<unk>")
        return labels

    def _prepare_label_tensor(self, sentences: List[Sentence]) -> torch.Tensor:
        return torch.tensor([self.codec.lookup(tag) for tag in self._get_gold_labels(sentences)], dtype=torch.long,
                            device=flair.device)

    # ------------------------------------------------------------------ decoding
    def decode(self, log_probs: torch.Tensor, lengths, repair: Optional[str] = None):
        """Trees (heads, relations) from tag log probabilities ``[B, N, K]`` (see `decode_offset_tags`)."""
        return decode_offset_tags(log_probs, lengths, self.codec, repair or self.repair)

    def tag_log_probs(self, scores) -> torch.Tensor:
        """``[B, N, tags]`` log probabilities of the dictionary's tags."""
        return scores.log_softmax()

    def _trees(self, scores, repair: str, log_probs: Optional[torch.Tensor] = None, probabilities: bool = False):
        """One batch's trees from its scores (`decode`'s, with probabilities as `decode_offset_tags`);
        `log_probs`: the tag log probabilities when already computed."""
        log_probs = self.tag_log_probs(scores) if log_probs is None else log_probs
        return decode_offset_tags(log_probs, scores.lengths, self.codec, repair, probabilities=probabilities)

    @staticmethod
    def _write_trees(batch: List[Sentence], trees, label_name: str) -> None:
        """Each token's ``head_id`` and its relation label (``"dep"`` where none), scored by its tag's
        probability: `trees` as `_trees` returns them with probabilities."""
        for sentence, (heads, rels, probs) in zip(batch, trees):
            for token, h, r, prob in zip(sentence, heads, rels, probs):
                token.head_id = h
                token.set_label(label_name, r if r is not None else "dep", prob)

    def _scores(self, batch: List[Sentence]):
        features, lengths = self._features(batch)
        return self.chain_scores(features, lengths)

    def _log_probs(self, batch: List[Sentence]):
        scores = self._scores(batch)
        return scores, self.tag_log_probs(scores)

    def predict(self, sentences: Union[List[Sentence], Sentence], mini_batch_size: int = 32,
                return_probabilities_for_all_classes: bool = False, verbose: bool = False,
                label_name: Optional[str] = None, return_loss=False, embedding_storage_mode="none",
                force_token_predictions: bool = False, repair: Optional[str] = None,
                tag_label_name: Optional[str] = None):
        """Parse: every token gets ``head_id`` (0 = ROOT; None only with ``repair="none"`` for a head outside
        the sentence) and a relation label of type `label_name` (default: the relation type) whose score is
        the probability of the chosen tag. With `tag_label_name`, the best raw tag is stored too."""
        label_name = label_name or self.relation_type
        repair = repair or self.repair
        total_loss, count = torch.zeros(1, device=flair.device), 0
        with eval_mode(self):
            for batch in inference_batches(sentences, mini_batch_size, verbose, embedding_storage_mode,
                                           desc="parsing"):
                scores = self._scores(batch)
                if return_loss:
                    total_loss += self._gold_loss(scores, self._gold_tags(batch, int(scores.lengths.max()))).sum()
                    count += int(scores.lengths.sum())
                self._write_trees(batch, self._trees(scores, repair, probabilities=True), label_name)
                if tag_label_name is None:
                    continue
                logp = self.tag_log_probs(scores).double().cpu()
                for b, sentence in enumerate(batch):
                    best = logp[b, :len(sentence)].argmax(-1).tolist()
                    for token, k in zip(sentence, best):
                        token.set_label(tag_label_name, self.tag_names[k], float(logp[b, token.idx - 1, k].exp()))
        if return_loss:
            return total_loss, count
        return None

    # ------------------------------------------------------------------ evaluation (EvaluatesTrees)
    def _evaluation_modes(self, repairs: Optional[Sequence[str]]) -> List[str]:
        """This tagger's repair first (the main scores), then `repairs` (default: none, reported as
        ``norepair_*``)."""
        return [self.repair] + [m for m in (repairs if repairs is not None else ("none",)) if m != self.repair]

    def _evaluate_batch(self, batch, modes, return_loss):
        scores, logp = self._log_probs(batch)
        loss = float(self._gold_loss(scores, self._gold_tags(batch, logp.shape[1])).sum()) if return_loss else 0.0
        best = logp.argmax(-1).cpu()
        gold_strings = iter(self._get_gold_labels(batch))
        hits = sum(self.tag_names[int(best[b, i])] == next(gold_strings)
                   for b, sentence in enumerate(batch) for i in range(len(sentence)))
        trees = {mode: list(self._trees(scores, mode, logp)) for mode in modes}
        return loss, int(scores.lengths.sum()), trees, {"tag_hits": hits, "tag_total": sum(map(len, batch))}

    def _evaluation_extra(self, counters):
        return {"tag_accuracy": counters["tag_hits"] / max(counters["tag_total"], 1)}

    def _evaluation_title(self) -> str:
        return f"{type(self).__name__} (repair: {self.repair})"

    # ------------------------------------------------------------------ save / load
    def _get_state_dict(self):
        return {**super()._get_state_dict(), "repair": self.repair, "relation_type": self.relation_type,
                "root_relation": self.root_relation, "main_metric": self.main_metric}

    @classmethod
    def _init_model_with_state_dict(cls, state, **kwargs):
        if state.get("factorised") and not getattr(cls, "factorised", False):
            from .factorised_parser import FactorisedDependencyTagger  # a factorised student's file, loaded as such

            return FactorisedDependencyTagger._init_model_with_state_dict(state, **kwargs)
        for key, default in (("repair", "mst"), ("relation_type", "dependency"), ("root_relation", "root"),
                             ("main_metric", "las")):
            kwargs.setdefault(key, state.get(key, default))
        return super()._init_model_with_state_dict(state, **kwargs)
