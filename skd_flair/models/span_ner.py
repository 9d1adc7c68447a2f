"""NER as parsing (Yu et al., 2020, "Named Entity Recognition as Dependency Parsing"): a biaffine span
classifier as a Flair model, and a teacher for case 4 of structural KD.

Embeddings -> BiLSTM -> start and end MLPs -> a biaffine scorer giving every candidate span ``(i, j)`` (up to
`max_width` tokens) a logit for "no entity" and for each entity type. Training is Yu et al.'s span-level
cross-entropy over all candidate spans (``objective="span"``) or the exact structured loss ``log Z -
score(gold span set)`` of the span-set distribution below (``objective="structured"``).

The model read as a structure scores each labelled span by its type logit minus its None logit; a set of
non-overlapping labelled spans then scores the sum of its spans (``structs.spans.LabelledSpans``). Decoding
finds the best such set exactly (equivalently: the most probable joint assignment of all candidate spans
under the per-span softmaxes, among those whose entities do not overlap), and `teacher_scores` hands the
same scores to KD as `SpanScores`, whose BIOES token marginals teach a MaxEnt tagger.

Predictions are Flair `Span` labels under the model's label type, so Flair's `Classifier.evaluate` (exact
span micro-F1) and `ModelTrainer` work unchanged.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import List, Optional, Tuple, Union, cast

import flair
import torch
import torch.nn.functional as F
from flair.data import Dictionary, Label, Sentence
from flair.embeddings import TokenEmbeddings
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence

from ..distill.span_scores import SpanScores
from ..structs.spans import LabelledSpans
from .embedding_names import KeepsStackNames
from .frozen_embeddings import FrozenEmbeddingsStayEval
from .eval_loop import eval_mode, inference_batches
from .layers import Biaffine
from .kd_student import is_unlabelled

log = logging.getLogger("flair")

__all__ = ["BiaffineSpanTagger", "OBJECTIVES"]

OBJECTIVES = ("span", "structured")

GoldSpan = Tuple[int, int, int]  # start, end (inclusive, 0-based), type index (0-based, None excluded)


def _type_names(dictionary: Dictionary) -> List[str]:
    names = [name for name in dictionary.get_items() if name not in ("<unk>", "O")]
    if not names:
        raise ValueError("the label dictionary has no entity types; build it with "
                         "corpus.make_label_dictionary('ner', add_unk=False)")
    return names


class BiaffineSpanTagger(FrozenEmbeddingsStayEval, KeepsStackNames, flair.nn.Classifier[Sentence]):
    """Biaffine span NER (Yu et al. 2020) over any Flair token embeddings.

    Args:
        embeddings: Flair token embeddings (a stack, one-hot, transformer, ...).
        label_dictionary: the entity types (``corpus.make_label_dictionary(label_type, add_unk=False)``); the
            "no entity" class is added internally. The caller's dictionary is not modified.
        label_type: the span label type to learn and predict (e.g. ``"ner"``).
        max_width: the longest candidate span in tokens (None: no limit, as in Yu et al.). Gold spans that
            are longer cannot be predicted; they are left out of training with a warning.
        objective: ``"span"`` (cross-entropy of every candidate span over None + types, Yu et al.) or
            ``"structured"`` (``log Z - score(gold)`` of the span-set distribution).
        hidden_size, rnn_layers: the BiLSTM (per direction); ``rnn_layers=0`` uses no LSTM.
        mlp_size: width of the start and end MLPs.
        reproject_embeddings: a linear layer on the embeddings first (as Flair's tagger).
        dropout, word_dropout, locked_dropout: on the embeddings and the LSTM output (Flair's meanings).
        mlp_dropout: after the start and end MLPs.
    """

    def __init__(self, embeddings: TokenEmbeddings, label_dictionary: Dictionary, label_type: str,
                 max_width: Optional[int] = None, objective: str = "span", hidden_size: int = 200,
                 rnn_layers: int = 1, mlp_size: int = 150, reproject_embeddings: bool = True, dropout: float = 0.0,
                 word_dropout: float = 0.05, locked_dropout: float = 0.5, mlp_dropout: float = 0.2):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if max_width is not None and (isinstance(max_width, bool) or int(max_width) != max_width or max_width < 1):
            raise ValueError(f"max_width must be an integer >= 1 or None, got {max_width!r}")
        self.label_dictionary = copy.deepcopy(label_dictionary)
        self.type_names = _type_names(self.label_dictionary)
        self._type_index = {name: e for e, name in enumerate(self.type_names)}
        self._label_type = label_type
        self.max_width = None if max_width is None else int(max_width)
        self.objective = objective
        self.hidden_size, self.rnn_layers, self.mlp_size = hidden_size, rnn_layers, mlp_size
        self.reproject_embeddings = reproject_embeddings
        self.dropout_rate, self.word_dropout_rate = dropout, word_dropout
        self.locked_dropout_rate, self.mlp_dropout_rate = locked_dropout, mlp_dropout
        self._warned: set = set()

        self.embeddings = embeddings
        size = embeddings.embedding_length
        self.dropout = torch.nn.Dropout(dropout) if dropout > 0 else torch.nn.Identity()
        self.word_dropout = flair.nn.WordDropout(word_dropout) if word_dropout > 0 else torch.nn.Identity()
        self.locked_dropout = flair.nn.LockedDropout(locked_dropout) if locked_dropout > 0 else torch.nn.Identity()
        if reproject_embeddings:
            self.embedding2nn = torch.nn.Linear(size, size)
        if rnn_layers > 0:
            self.rnn = torch.nn.LSTM(size, hidden_size, num_layers=rnn_layers, bidirectional=True, batch_first=True,
                                     dropout=0.5 if rnn_layers > 1 else 0.0)
            size = 2 * hidden_size
        self.start_mlp = torch.nn.Sequential(torch.nn.Linear(size, mlp_size), torch.nn.LeakyReLU(0.1),
                                             torch.nn.Dropout(mlp_dropout))
        self.end_mlp = torch.nn.Sequential(torch.nn.Linear(size, mlp_size), torch.nn.LeakyReLU(0.1),
                                           torch.nn.Dropout(mlp_dropout))
        self.biaffine = Biaffine(mlp_size, len(self.type_names) + 1, init="xavier")  # class 0: no entity
        self.to(flair.device)

    # ------------------------------------------------------------------ Flair interface
    label_type = property(lambda self: self._label_type, doc="The label type the spans are written to.")

    @property
    def label_names(self) -> List[str]:
        """The entity types, in score order (column e of the span scores is type e)."""
        return list(self.type_names)

    # ------------------------------------------------------------------ scores
    def _embed(self, sentences: List[Sentence]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``[B, N, D]`` zero-padded token embeddings and ``[B]`` lengths (CPU), in the given order."""
        self.embeddings.embed(sentences)
        names = self.embeddings.get_names()
        rows = [torch.stack([token.get_embedding(names) for token in sentence]) for sentence in sentences]
        lengths = torch.tensor([len(sentence) for sentence in sentences], dtype=torch.long)
        return pad_sequence(rows, batch_first=True).to(flair.device), lengths

    def forward(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B, N, N, 1 + E]`` logits of every span ``(i, j)`` (class 0: no entity), from embeddings."""
        x = self.locked_dropout(self.word_dropout(self.dropout(embedded)))
        if self.reproject_embeddings:
            x = self.embedding2nn(x)
        if self.rnn_layers > 0:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            x, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=embedded.shape[1])
            x = self.locked_dropout(self.dropout(x))
        return self.biaffine(self.start_mlp(x), self.end_mlp(x)).permute(0, 2, 3, 1)  # [B, start, end, class]

    def span_logits(self, sentences: List[Sentence]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Embed sentences (any order) and return (logits ``[B, N, N, 1 + E]``, lengths)."""
        embedded, lengths = self._embed(sentences)
        return self.forward(embedded, lengths), lengths

    @staticmethod
    def relative_scores(logits: torch.Tensor) -> torch.Tensor:
        """``[B, N, N, E]`` each type's logit minus the None logit: the span scores of the span-set model."""
        return logits[..., 1:] - logits[..., :1]

    def candidate_mask(self, lengths: torch.Tensor, n: int) -> torch.Tensor:
        """``[B, N, N]`` True for every candidate span ``i <= j < length`` of width at most `max_width`."""
        pos = torch.arange(n, device=lengths.device)
        width = pos.view(1, n) - pos.view(n, 1)  # j - i
        ok = width >= 0
        if self.max_width is not None:
            ok = ok & (width < self.max_width)
        inside = pos.view(1, n) < lengths.view(-1, 1)
        return ok.unsqueeze(0) & inside.unsqueeze(1) & inside.unsqueeze(2)

    def structure(self, logits: torch.Tensor, lengths: torch.Tensor) -> LabelledSpans:
        return LabelledSpans(self.relative_scores(logits), lengths.to(logits.device), self.max_width)

    @torch.no_grad()
    def teacher_scores(self, sentences: List[Sentence]) -> SpanScores:
        """Span scores of sentences (in the given order) for teaching: eval mode, no graph."""
        with eval_mode(self):
            logits, lengths = self.span_logits(sentences)
        return SpanScores(self.relative_scores(logits).detach(), lengths.to(logits.device), self.type_names,
                          self.max_width)

    # ------------------------------------------------------------------ gold spans
    def _warn_once(self, key: str, message: str):
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message)

    def _gold_spans(self, sentence: Sentence, structured: bool) -> List[GoldSpan]:
        """The sentence's gold spans of this label type that the model can represent."""
        spans: List[GoldSpan] = []
        for label in sentence.get_labels(self.label_type):
            tokens = getattr(label.data_point, "tokens", None)
            if tokens is None or label.data_point is sentence:
                continue  # a sentence-level label of the same type is not a span
            start, end = tokens[0].idx - 1, tokens[-1].idx - 1
            if label.value not in self._type_index:
                self._warn_once(f"type:{label.value}", f"BiaffineSpanTagger: gold type {label.value!r} is not "
                                f"among the model's types {self.type_names}; such spans are not learned")
                continue
            if self.max_width is not None and end - start + 1 > self.max_width:
                self._warn_once("width", f"BiaffineSpanTagger: gold spans longer than max_width={self.max_width} "
                                "tokens cannot be predicted and are left out of training")
                continue
            spans.append((start, end, self._type_index[label.value]))
        spans.sort()
        if structured:  # a span set must not overlap; keep the first of overlapping gold spans
            kept: List[GoldSpan] = []
            for span in spans:
                if kept and span[0] <= kept[-1][1]:
                    self._warn_once("overlap", "BiaffineSpanTagger: overlapping (nested) gold spans are not a flat "
                                    "span set; the structured objective keeps the first of them")
                    continue
                kept.append(span)
            spans = kept
        return spans

    def _gold_tensor(self, sentences: List[Sentence], n: int, structured: bool) -> torch.Tensor:
        """``[B, N, N]`` gold class of every span (0: no entity, 1 + e: type e)."""
        gold = torch.zeros(len(sentences), n, n, dtype=torch.long)
        for b, sentence in enumerate(sentences):
            for i, j, e in self._gold_spans(sentence, structured):
                gold[b, i, j] = e + 1
        return gold.to(flair.device)

    # ------------------------------------------------------------------ training
    def _loss(self, logits: torch.Tensor, lengths: torch.Tensor, sentences: List[Sentence],
              objective: Optional[str] = None) -> torch.Tensor:
        """``[B]`` per-sentence loss (sums over spans) of the gold spans under `objective`."""
        objective = objective or self.objective
        n = logits.shape[1]
        gold = self._gold_tensor(sentences, n, structured=objective == "structured")
        lengths = lengths.to(logits.device)
        if objective == "span":
            mask = self.candidate_mask(lengths, n)
            nll = F.cross_entropy(logits.permute(0, 3, 1, 2), gold, reduction="none")  # [B, N, N]
            return torch.where(mask, nll, nll.new_zeros(())).sum((1, 2))
        spans = self.structure(logits, lengths)
        indicator = F.one_hot(gold, len(self.type_names) + 1)[..., 1:].to(logits.dtype)
        return spans.log_partition - spans.expected_score(indicator)

    def forward_loss(self, sentences: List[Sentence]) -> Tuple[torch.Tensor, int]:
        """Summed loss over the labelled sentences (sentences marked unlabelled teach nothing) and the number
        of their tokens."""
        sentences = [s for s in sentences if len(s) > 0 and not is_unlabelled(s)]
        if not sentences:
            return torch.tensor(0.0, device=flair.device, requires_grad=True), 0
        logits, lengths = self.span_logits(sentences)
        return self._loss(logits, lengths, sentences).sum(), int(lengths.sum())

    # ------------------------------------------------------------------ prediction
    def predict(self, sentences: Union[List[Sentence], Sentence], mini_batch_size: int = 32,
                return_probabilities_for_all_classes: bool = False, verbose: bool = False,
                label_name: Optional[str] = None, return_loss: bool = False, embedding_storage_mode="none"):
        """Add the best set of non-overlapping labelled spans to each sentence as Flair `Span` labels; a span's
        score is its marginal probability under the span-set model. With
        `return_probabilities_for_all_classes`, every token also gets its BIOES marginal distribution."""
        label_name = label_name or self.label_type
        if not isinstance(sentences, list) and not isinstance(sentences, flair.data.Dataset):
            sentences = [sentences]
        sentences = [s for s in cast(List[Sentence], sentences) if len(s) > 0]
        total_loss = torch.zeros(1, device=flair.device)
        count = 0
        if sentences:
            Sentence.set_context_for_sentences(sentences)
        with eval_mode(self):
            for batch in inference_batches(sentences, mini_batch_size, verbose, embedding_storage_mode,
                                           longest_first=True):
                logits, lengths = self.span_logits(batch)
                if return_loss:
                    total_loss += self._loss(logits, lengths, batch).sum()
                    count += int(lengths.sum())
                self._add_predictions(batch, self.structure(logits, lengths), label_name,
                                      return_probabilities_for_all_classes)
        if return_loss:
            return total_loss, count
        return None

    def _add_predictions(self, batch: List[Sentence], spans: LabelledSpans, label_name: str, all_classes: bool):
        best = spans.decode()
        marginals = spans.marginals.cpu()
        tags = LabelledSpans.bioes_tags(self.type_names)
        token_probs = spans.token_marginals.cpu() if all_classes else None
        for b, sentence in enumerate(batch):
            sentence.remove_labels(label_name)
            for i, j, e in best[b]:
                sentence[i:j + 1].add_label(label_name, value=self.type_names[e], score=float(marginals[b, i, j, e]))
            if token_probs is not None:
                for m, token in enumerate(sentence.tokens):
                    token.add_tags_proba_dist(label_name, [Label(token, tag, float(p))
                                                           for tag, p in zip(tags, token_probs[b, m].tolist())])

    # ------------------------------------------------------------------ save / load
    def _get_state_dict(self):
        return {**super()._get_state_dict(), "embeddings": self.embeddings.save_embeddings(use_state_dict=False),
                "label_dictionary": self.label_dictionary, "label_type": self.label_type,
                "max_width": self.max_width, "objective": self.objective, "hidden_size": self.hidden_size,
                "rnn_layers": self.rnn_layers, "mlp_size": self.mlp_size,
                "reproject_embeddings": self.reproject_embeddings, "dropout": self.dropout_rate,
                "word_dropout": self.word_dropout_rate, "locked_dropout": self.locked_dropout_rate,
                "mlp_dropout": self.mlp_dropout_rate}

    @classmethod
    def _init_model_with_state_dict(cls, state, **kwargs):
        for key in ("embeddings", "label_dictionary", "label_type", "max_width", "objective", "hidden_size",
                    "rnn_layers", "mlp_size", "reproject_embeddings", "dropout", "word_dropout", "locked_dropout",
                    "mlp_dropout"):
            if key in state:
                kwargs.setdefault(key, state[key])
        return super()._init_model_with_state_dict(state, **kwargs)

    @staticmethod
    def _fetch_model(model_name):
        """A local file as is; otherwise an ``organisation/name`` hub id through Flair's hub download."""
        name = str(model_name) if isinstance(model_name, (str, Path)) else ""
        if name and not Path(name).exists() and name.split("@")[0].count("/") == 1 \
                and not name.startswith((".", "/", "~")) and not name.endswith((".pt", ".bin")):
            from flair.file_utils import hf_download

            return hf_download(name)
        return model_name

    @classmethod
    def load(cls, model_path) -> "BiaffineSpanTagger":
        return cast("BiaffineSpanTagger", super().load(model_path=model_path))
