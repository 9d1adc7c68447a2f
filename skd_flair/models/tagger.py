"""A Flair SequenceTagger that can teach and learn by structural knowledge distillation.

It is Flair's BiLSTM(-CRF) tagger with three changes:
- exact inference: log Z, marginals and Viterbi come from `skd_flair.structs.LinearChainCRF` (Flair's own CRF
  "probabilities" are Viterbi prefix scores, not marginals), so `predict` can store true per-token marginals;
- a KD term in `forward_loss` for sentences that carry teacher targets (metadata ``KD_TARGETS``, attached by
  `DistillationPlugin`), mixed with the gold loss by the weight the plugin sets;
- every constructor argument, `bidirectional` included, survives save and load.
"""
from __future__ import annotations

import copy
import logging
from typing import List, Optional, Union, cast

import flair
import torch
import torch.nn.functional as F
from flair.data import Dictionary, Label, Sentence, Span, get_spans_from_bio
from flair.datasets import DataLoader, FlairDatapointDataset
from flair.embeddings import TokenEmbeddings
from flair.models import SequenceTagger
from flair.training_utils import store_embeddings
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from tqdm import tqdm

from ..distill import ChainScores
from .embedding_names import KeepsStackNames
from .frozen_embeddings import FrozenEmbeddingsStayEval
from .kd_student import KD_TARGETS, UNLABELLED, LearnsFromTeacher, build_objective, is_unlabelled
from .eval_loop import eval_mode
from .quantize import float_rows, quantize_like, quiet

log = logging.getLogger("flair")

__all__ = ["DistillableTagger", "KD_TARGETS", "UNLABELLED", "is_unlabelled"]


class _HideFlairTagLine(logging.Filter):
    """Drops Flair's "SequenceTagger predicts: Dictionary with ... tags" line, which lists a CRF's internal
    <START>/<STOP> states among the tags; `DistillableTagger` logs the user's tags instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SequenceTagger predicts:")


def write_labels(sentence: Sentence, tags: List[str], scores: List[float], label_name: str, spans: bool,
                 names: List[str], distributions: Optional[List[List[float]]] = None) -> None:
    """A sentence's predicted tags written back as Flair does: spans (BIOES/BIO tag types) or token labels
    (``O`` and ``_`` left out), and, given ``distributions``, each token's probabilities over ``names``."""
    if spans:
        for span_tokens, score, value in get_spans_from_bio(tags, scores):
            span: Span = sentence[span_tokens[0]:span_tokens[-1] + 1]
            span.add_label(label_name, value=value, score=score)
    else:
        for token, tag, score in zip(sentence.tokens, tags, scores):
            if tag not in ("O", "_"):
                token.add_label(typename=label_name, value=tag, score=score)
    if distributions is not None:
        for token, row in zip(sentence.tokens, distributions):
            token.add_tags_proba_dist(label_name, [Label(token, name, float(p)) for name, p in zip(names, row)])


class DistillableTagger(FrozenEmbeddingsStayEval, KeepsStackNames, LearnsFromTeacher, SequenceTagger):
    """Flair's `SequenceTagger` (same arguments) usable as KD teacher and student.

    Args:
        kd_objective: the KD objective (an object or a config such as ``{"type": "structural",
            "temperature": 2}``); only used when sentences carry teacher targets. Saved with the model.
        All other arguments are `SequenceTagger`'s. The caller's `tag_dictionary` is never modified.
    """

    def __init__(self, embeddings: TokenEmbeddings, tag_dictionary: Dictionary, tag_type: str,
                 kd_objective=None, **kwargs):
        if not kwargs.get("init_from_state_dict", False):
            tag_dictionary = copy.deepcopy(tag_dictionary)  # Flair adds <START>/<STOP> to it in place
        hide = _HideFlairTagLine()
        log.addFilter(hide)
        try:
            super().__init__(embeddings, tag_dictionary, tag_type, **kwargs)
        finally:
            log.removeFilter(hide)
        tags = [t for t in self.label_dictionary.get_items() if t not in ("<START>", "<STOP>")]
        log.info(f"{type(self).__name__} predicts: {len(tags)} tags: {', '.join(tags[:50])}"
                 + (", ..." if len(tags) > 50 else ""))
        self.kd_objective = build_objective(kd_objective)
        self.kd_weight = 1.0  # lambda of lambda * L_KD + (1 - lambda) * L_gold; the plugin anneals it
        self.kd_stats: dict = {}

    # ------------------------------------------------------------------ scores
    @property
    def label_names(self) -> List[str]:
        return self.label_dictionary.get_items()

    def forward(self, sentence_tensor: torch.Tensor, lengths: torch.LongTensor) -> torch.Tensor:
        """Emission scores ``[B, N, K]`` (Flair's forward without its CRF wrapping)."""
        if self.use_dropout:
            sentence_tensor = self.dropout(sentence_tensor)
        if self.use_word_dropout:
            sentence_tensor = self.word_dropout(sentence_tensor)
        if self.use_locked_dropout:
            sentence_tensor = self.locked_dropout(sentence_tensor)
        if self.reproject_embeddings:
            sentence_tensor = self.embedding2nn(sentence_tensor)
        if self.use_rnn:
            packed = pack_padded_sequence(sentence_tensor, lengths, batch_first=True, enforce_sorted=False)
            rnn_output, _ = self.rnn(packed)
            sentence_tensor, _ = pad_packed_sequence(rnn_output, batch_first=True)
        if self.use_dropout:
            sentence_tensor = self.dropout(sentence_tensor)
        if self.use_locked_dropout:
            sentence_tensor = self.locked_dropout(sentence_tensor)
        return self.linear(sentence_tensor)

    @property
    def kd_factorisation(self) -> str:
        return "crf" if self.use_crf else "maxent"

    def chain_scores(self, features: torch.Tensor, lengths: torch.Tensor) -> ChainScores:
        """The tagger as a structure over its own labels (<START>/<STOP> included for a CRF, exactly the
        distribution Flair's CRF loss normalises over)."""
        lengths = lengths.to(features.device)
        if not self.use_crf:
            return ChainScores(features, lengths, self.label_names)
        flair_trans = self.crf.transitions  # [to, from]
        start_idx = self.label_dictionary.get_idx_for_item("<START>")
        stop_idx = self.label_dictionary.get_idx_for_item("<STOP>")
        return ChainScores(features, lengths, self.label_names, transitions=flair_trans.t(),
                           start=flair_trans[:, start_idx], end=flair_trans[stop_idx, :])

    def _float_dtype(self) -> torch.dtype:
        weight = self.linear.weight
        # a dynamically int8-quantised Linear has a `weight()` method instead; it takes float32 activations
        return weight.dtype if isinstance(weight, torch.Tensor) else torch.float32

    def _make_padded_tensor_for_batch(self, sentences: List[Sentence]):
        """Flair's, except that the padding dtype does not come from ``self.linear.weight.dtype`` directly,
        which fails once the layer is int8-quantised (``skd-flair export --quantize int8``)."""
        names = self.embeddings.get_names()
        lengths = [len(sentence.tokens) for sentence in sentences]
        longest = max(lengths)
        width = self.embeddings.embedding_length
        padding = torch.zeros(width * longest, dtype=self._float_dtype(), device=flair.device)
        all_embs = []
        for sentence in sentences:
            all_embs += [emb for token in sentence for emb in token.get_each_embedding(names)]
            if longest > len(sentence):
                all_embs.append(padding[:width * (longest - len(sentence))])
        sentence_tensor = torch.cat(all_embs).view([len(sentences), longest, width])
        return torch.LongTensor(lengths), sentence_tensor

    def _features(self, sentences: List[Sentence]):
        """Embed sentences (any order) and return (emissions ``[B, N, K]``, lengths)."""
        sentence_tensor, lengths = self._prepare_tensors(sentences)
        return self.forward(sentence_tensor, lengths), lengths

    @torch.no_grad()
    def teacher_scores(self, sentences: List[Sentence]) -> ChainScores:
        """Scores of sentences (in the given order) for teaching: eval mode, no graph."""
        with eval_mode(self):
            features, lengths = self._features(sentences)
        return self.chain_scores(features.detach(), lengths)

    # ------------------------------------------------------------------ training
    def _gold_tags(self, sentences: List[Sentence], n: int) -> torch.Tensor:
        flat = self._prepare_label_tensor(sentences)
        tags = torch.zeros(len(sentences), n, dtype=torch.long, device=flat.device)
        offset = 0
        for b, sentence in enumerate(sentences):
            tags[b, :len(sentence)] = flat[offset:offset + len(sentence)]
            offset += len(sentence)
        return tags

    def _gold_loss(self, scores: ChainScores, tags: torch.Tensor) -> torch.Tensor:
        """Per-sentence negative log-likelihood of the gold tags."""
        if scores.is_crf:
            crf = scores.crf()
            return crf.log_partition - crf.score(tags)
        logits = scores.emissions.transpose(1, 2)  # [B, K, N] for cross_entropy
        nll = F.cross_entropy(logits, tags, weight=self.loss_weights, reduction="none")
        return nll.masked_fill(~scores.mask, 0.0).sum(1)

    def forward_loss(self, sentences: List[Sentence]):
        sentences = [s for s in sentences if len(s) > 0]  # an empty sentence has no structure and no loss
        if len(sentences) == 0:
            return torch.tensor(0.0, dtype=torch.float, device=flair.device, requires_grad=True), 0
        sentences = sorted(sentences, key=len, reverse=True)
        features, lengths = self._features(sentences)
        scores = self.chain_scores(features, lengths)
        gold = self._gold_loss(scores, self._gold_tags(sentences, features.shape[1]))
        loss = self._mixed_loss(sentences, scores, gold, features.device, features.dtype)
        return loss.sum(), int(lengths.sum())

    # ------------------------------------------------------------------ prediction
    def predict(self, sentences: Union[List[Sentence], Sentence], mini_batch_size: int = 32,
                return_probabilities_for_all_classes: bool = False, verbose: bool = False,
                label_name: Optional[str] = None, return_loss=False, embedding_storage_mode="none",
                force_token_predictions: bool = False):
        """Flair's `predict`, with exact decoding; a token's score is the marginal probability of its predicted
        tag, and `return_probabilities_for_all_classes` stores the true marginal distribution per token."""
        if label_name is None:
            label_name = self.tag_type
        with torch.no_grad():
            if not sentences:
                return sentences
            if not isinstance(sentences, list) and not isinstance(sentences, flair.data.Dataset):
                sentences = [sentences]
            Sentence.set_context_for_sentences(cast(List[Sentence], sentences))
            sentences = [s for s in sentences if len(s) > 0]
            reordered = sorted(sentences, key=len, reverse=True)
            if not reordered:
                return sentences
            loader = DataLoader(dataset=FlairDatapointDataset(reordered), batch_size=mini_batch_size)
            if verbose:
                loader = tqdm(loader, desc="Batch inference")
            overall_loss = torch.zeros(1, device=flair.device)
            label_count = 0
            for batch in loader:
                if not batch:
                    continue
                features, lengths = self._features(batch)
                scores = self.chain_scores(features, lengths)
                for sentence in batch:
                    sentence.remove_labels(label_name)
                if return_loss:
                    overall_loss += self._gold_loss(scores, self._gold_tags(batch, features.shape[1])).sum()
                    label_count += int(lengths.sum())
                if scores.is_crf:
                    crf = scores.crf()
                    tags, probs = crf.argmax, crf.marginals
                else:
                    probs = torch.softmax(scores.emissions, dim=-1)
                    tags = probs.argmax(-1)
                self._add_predictions(batch, tags.cpu(), probs.cpu(), label_name, force_token_predictions,
                                      return_probabilities_for_all_classes)
                store_embeddings(batch, storage_mode=embedding_storage_mode)
            if return_loss:
                return overall_loss, label_count
            return None

    def _add_predictions(self, batch, tags, probs, label_name, force_token_predictions, all_classes):
        names = self.label_names
        spans = self.predict_spans and not force_token_predictions
        for b, sentence in enumerate(batch):
            n = len(sentence)
            write_labels(sentence, [names[i] for i in tags[b, :n].tolist()],
                         probs[b, torch.arange(n), tags[b, :n]].tolist(), label_name, spans, names,
                         probs[b, :n].tolist() if all_classes else None)

    # ------------------------------------------------------------------ save / load
    def _get_state_dict(self):
        return {**super()._get_state_dict(), "bidirectional": self.bidirectional,
                "kd_objective": None if self.kd_objective is None else self.kd_objective.config()}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, also for the state dict of a dynamically int8-quantised tagger: its
        quantised LSTM/Linear layers are quantised here first (see `skd_flair.models.quantize`), so Flair's
        ordinary loading reads such a file. Half-precision (fp16) weights are copied into the float32 parameters
        as usual, which restores float32, and int8 word tables (``skd-flair export --quantize int8``) become float32
        tables again."""
        state_dict = float_rows(state_dict)
        if quantize_like(self, state_dict):
            with quiet():
                return super().load_state_dict(state_dict, strict=strict, assign=assign)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @classmethod
    def _init_model_with_state_dict(cls, state, **kwargs):
        kwargs.setdefault("bidirectional", state.get("bidirectional", True))
        kwargs.setdefault("kd_objective", state.get("kd_objective"))
        return super()._init_model_with_state_dict(state, **kwargs)
