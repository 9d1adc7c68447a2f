"""A fast inference path for tagger students: Flair's computation as one plain torch graph over id tensors.

A student ``DistillableTagger`` embeds with static word tables (Flair ``WordEmbeddings`` over GloVe / gensim
``KeyedVectors``, or ``FastTextSubwordEmbeddings``) and Flair ``CharacterEmbeddings``, then runs the optional
``embedding2nn`` reprojection, the (Bi)LSTM/GRU/RNN and the Linear layer, and decodes with CRF Viterbi or a
per-token argmax. Flair's ``predict`` does the embedding part token by token in Python (a lookup and a tensor per
token, one char LSTM call per sentence, ``torch.cat`` of it all), which dominates a small student's run time.

:class:`FastTagger` does the same computation in eval mode with one Python pass per batch that turns token
texts into ids (:meth:`FastTagger.tensorize`, rules shared with the ONNX runner in ``skd_flair.tagging_runtime``)
and one graph over the ids (:meth:`FastTagger.forward`: ``word_ids [B, N(, W)]``, ``char_ids [B, N, C]``
(-1 = padding) or ``[U, C]`` for the U distinct tokens of the batch with ``char_index [B, N]``, ``lengths [B]``
-> best tag ids ``[B, N]``, -1 on padding). What it reproduces, and how:

- word lookup: Flair's rule (``WordEmbeddings.get_cached_token_index``: the word, its lowercase form, that form
  with digits as ``#``, then as ``0``, else the unknown row) and the ``stable`` layer norm if any; fastText: the
  word's vector, else ``F.embedding_bag`` over its hashed n-grams, as ``FastTextSubwordEmbeddings`` computes it;
- ``CharacterEmbeddings``: its character dictionary (unknown characters -> ``<unk>``), its char LSTM, and what
  Flair keeps of it: the *output at the last character* of both directions (for the backward direction that is
  one LSTM step over the last character from a zero state, not its final state); and Flair's reordering quirk: a
  token whose character ids occur again later in its sentence gets the char embedding of the token at its own
  index in the length-sorted order (``CharacterEmbeddings._add_embeddings_internal``; ``char_sources``); not so
  for ``BatchedCharacterEmbeddings`` (what skd_flair's ``char`` embedding builds), where each token is its own;
- the pieces concatenated in Flair's order (``Token.get_each_embedding``: sorted by embedding name),
  ``embedding2nn`` when the tagger reprojects; the dropouts are skipped (inactive in eval);
- the RNN: each layer and direction as its own one-layer module (weights copied), the backward direction run
  over each sentence reversed within its length: the same as Flair's packed RNN on every real position (and
  faster here than a packed bidirectional call), and a graph ONNX can export;
- decoding: ``forward`` and ``decode`` use ``skd_flair.structs.LinearChainCRF`` with the tagger's transitions,
  start and end scores exactly as ``DistillableTagger.chain_scores`` builds them, or softmax then argmax for a
  MaxEnt tagger, as ``DistillableTagger.predict`` does. ``predict`` decodes a CRF with the numpy port in
  ``skd_flair.tagging_runtime`` (the same Viterbi recursion in float32, marginals in float64), which has far
  less per-step overhead than torch on ``[B, K, K]`` arrays.

Exactness: the same tags and spans as ``model.predict``; emissions and scores agree to float rounding (~1e-6:
the char LSTM runs over the batch's tokens at once rather than per sentence, and the marginals are computed in
float64), so a tie broken by the last bit could in principle differ.

API: :func:`fast_predict(model, sentences, mini_batch_size)` (or ``FastTagger.from_tagger(model).predict(...)``)
writes what ``model.predict`` writes (span labels with mean-marginal scores for BIOES/BIO taggers, token labels
otherwise; ``return_probabilities_for_all_classes``, ``force_token_predictions`` and ``label_name`` as there).
It is a function beside Flair's API, not a ``predict(..., fast=True)`` flag, because Flair calls ``predict``
itself (``evaluate``, the trainer) with its own arguments, and a flag would have to keep a derived module on the
model: as a submodule it would enter ``state_dict`` and the saved file, as a plain attribute it would go stale
when training changes the weights. ``fast_predict`` keeps one ``FastTagger`` per model in a weak cache and
rebuilds it when a parameter or buffer of the model was replaced or modified in place (torch's version
counters). A ``FastTagger`` itself is a snapshot (its word tables are shared with the model, the small layers
copied): rebuild it after training the model further.

Only float taggers are supported (an int8 file from ``skd-flair export --quantize int8`` is refused: use the
float model). Anything else (another embedding, a plain Flair ``SequenceTagger``, which decodes with Flair's own
Viterbi) is refused with a one-line :class:`UnsupportedTagger` error. ``OnnxEmissions`` and
``runtime_config`` serve ``skd-flair export --format onnx`` (see ``skd_flair.training.export``).
"""
from __future__ import annotations

import copy
import weakref
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from flair.data import Sentence
from flair.embeddings import CharacterEmbeddings, StackedEmbeddings, WordEmbeddings
from torch import nn

from ..tagging_runtime import Encoder, char_sources, crf_marginals, flair_word_index, viterbi
from ..structs import LinearChainCRF
from .char_embeddings import BatchedCharacterEmbeddings
from .fasttext import FastTextSubwordEmbeddings
from .tagger import DistillableTagger, write_labels

__all__ = ["FastBatch", "FastTagger", "ONNX_FORMAT", "OnnxEmissions", "UnsupportedTagger", "char_sources",
           "fast_predict", "fast_tagger", "flair_word_index", "onnx_input_names", "runtime_config"]

_RNNS = (nn.LSTM, nn.GRU, nn.RNN)


class UnsupportedTagger(ValueError):
    """A tagger the fast path cannot reproduce (the message is one line)."""


def _members(embeddings) -> List[Tuple[str, nn.Module]]:
    if isinstance(embeddings, StackedEmbeddings):
        members = list(embeddings.embeddings)
    else:
        members = [embeddings]
    out = []
    for member in members:
        kind = type(member).__name__
        if type(member) is WordEmbeddings or isinstance(member, FastTextSubwordEmbeddings):
            if member.field is not None:
                raise UnsupportedTagger(f"fast path: word table {member.name!r} embeds label field "
                                        f"{member.field!r}, not the token text; unsupported")
        elif type(member) not in (CharacterEmbeddings, BatchedCharacterEmbeddings):
            raise UnsupportedTagger(f"fast path: unsupported embedding {kind} ({member.name}); supported: Flair "
                                    f"WordEmbeddings, FastTextSubwordEmbeddings and CharacterEmbeddings")
        out.append((member.name, member))
    if len({name for name, _ in out}) != len(out):
        raise UnsupportedTagger(f"fast path: embeddings share a name ({[n for n, _ in out]}); unsupported")
    if sum(isinstance(m, CharacterEmbeddings) for _, m in out) > 1:
        raise UnsupportedTagger("fast path: more than one CharacterEmbeddings; unsupported")
    return sorted(out, key=lambda item: item[0])  # Token.get_each_embedding concatenates by sorted name


def _float(module: nn.Module, what: str, types) -> nn.Module:
    if type(module) not in types:
        raise UnsupportedTagger(f"fast path: {what} is a {type(module).__module__}.{type(module).__name__}, not a "
                                f"float torch layer (an int8-quantised tagger?); use the float model")
    return module


def _single_direction(rnn: nn.Module, layer: int, reverse: bool, input_size: int) -> nn.Module:
    """Layer `layer`, one direction of `rnn`, as a one-layer batch-first module of the same type."""
    kwargs = {"num_layers": 1, "bias": rnn.bias, "batch_first": True}
    if type(rnn) is nn.RNN:
        kwargs["nonlinearity"] = rnn.nonlinearity
    single = type(rnn)(input_size, rnn.hidden_size, **kwargs)
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if rnn.bias else ()):
            getattr(single, f"{name}_l0").copy_(getattr(rnn, name + suffix))
    return single.to(getattr(rnn, "weight_ih" + suffix).device).eval()


def _reverse_within(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first ``lengths[b]`` positions of each row of ``x [B, N, D]``; padding stays in place."""
    t = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    length = lengths.unsqueeze(1)
    index = torch.where(t < length, length - 1 - t, t)
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[2]))


class FastBatch(NamedTuple):
    """The tensors :meth:`FastTagger.forward` takes (see :meth:`FastTagger.tensorize`)."""
    word_ids: torch.Tensor  # [B, N, W] long, one column per word table (fastText: -1 = out of vocabulary)
    char_ids: torch.Tensor  # [B, N, C], or [U, C] with char_index; long, -1 = padding; C = 0 without chars
    lengths: torch.Tensor  # [B] long, >= 1
    char_index: Optional[torch.Tensor] = None  # [B, N] long: the row of char_ids [U, C] of each position
    ngram_ids: Optional[List[torch.Tensor]] = None  # per fastText table: flat n-gram ids of its OOV tokens
    ngram_offsets: Optional[List[torch.Tensor]] = None  # per fastText table: one bag start per OOV token


class FastTagger(nn.Module):
    """A ``DistillableTagger``'s eval-mode computation over id tensors; build with :meth:`from_tagger`."""

    def __init__(self, tagger: DistillableTagger, emissions_only: bool = False):
        super().__init__()
        if not isinstance(tagger, DistillableTagger):
            raise UnsupportedTagger(f"fast path: needs a DistillableTagger, got {type(tagger).__name__} (a plain "
                                    f"Flair SequenceTagger decodes with Flair's own Viterbi; load it with "
                                    f"DistillableTagger.load)")
        # emissions_only: the caller decodes the emissions itself (a parser's trees), so any output layout will do
        if not emissions_only and tagger.kd_factorisation not in ("crf", "maxent"):
            raise UnsupportedTagger(f"fast path: {type(tagger).__name__} does not score one tag per column (its "
                                    f"output is factorised: {tagger.kd_factorisation}); use predict")
        members = _members(tagger.embeddings)
        self.tag_type = tagger.tag_type
        self.label_names: List[str] = list(tagger.label_names)
        self.predict_spans = bool(tagger.predict_spans)
        self.use_crf = bool(tagger.use_crf)
        # the pieces in concatenation order: ("word" | "fasttext", table number) or ("char", 0)
        self.pieces: List[Tuple[str, int]] = []
        self.word_vocabs: List[Dict[str, int]] = []
        self.word_kinds: List[str] = []
        self._ft: List[FastTextSubwordEmbeddings] = []
        self.word_weights = nn.ParameterList()  # shared with the tagger, never copied (GloVe is 80 MB)
        self.layer_norms = nn.ModuleList()
        self.ngram_weights = nn.ParameterList()
        self.char_dictionary = None
        self.char_index: Optional[Dict[str, int]] = None
        self.char_unk: Optional[int] = None
        self.flair_char_order = True
        for _, member in members:
            if isinstance(member, CharacterEmbeddings):
                self._init_chars(member)
                self.pieces.append(("char", 0))
                continue
            table = len(self.word_vocabs)
            if isinstance(member, FastTextSubwordEmbeddings):
                self.word_kinds.append("fasttext")
                self.word_weights.append(nn.Parameter(member.vectors, requires_grad=False))
                self.ngram_weights.append(nn.Parameter(member.ngram_vectors, requires_grad=False))
                self.layer_norms.append(nn.Identity())
                self._ft.append(member)
                self.pieces.append(("fasttext", table))
            else:
                self.word_kinds.append("word")
                self.word_weights.append(nn.Parameter(member.embedding.weight.detach(), requires_grad=False))
                self.layer_norms.append(copy.deepcopy(member.layer_norm) if member.layer_norm is not None
                                        else nn.Identity())
                self.pieces.append(("word", table))
            self.word_vocabs.append(member.vocab)
        self.embedding2nn = (copy.deepcopy(_float(tagger.embedding2nn, "embedding2nn", (nn.Linear,)))
                             if tagger.reproject_embeddings else None)
        self.rnn_layers = nn.ModuleList()
        self.bidirectional = False
        if tagger.use_rnn:
            rnn = _float(tagger.rnn, "the tagger's rnn", _RNNS)
            if getattr(rnn, "proj_size", 0):
                raise UnsupportedTagger("fast path: an LSTM with proj_size is unsupported")
            self.bidirectional = bool(rnn.bidirectional)
            directions = 2 if rnn.bidirectional else 1
            for layer in range(rnn.num_layers):
                size = rnn.input_size if layer == 0 else rnn.hidden_size * directions
                self.rnn_layers.append(nn.ModuleList([_single_direction(rnn, layer, reverse, size)
                                                      for reverse in ((False, True) if directions == 2 else (False,))]))
        self.linear = copy.deepcopy(_float(tagger.linear, "the tagger's linear layer", (nn.Linear,)))
        self.encoder = Encoder(self.word_vocabs, self.word_kinds, self.char_index, self.char_unk,
                               flair_char_order=self.flair_char_order)
        if self.use_crf:
            flair_trans = tagger.crf.transitions.detach()  # [to, from], exactly as DistillableTagger.chain_scores
            start = tagger.label_dictionary.get_idx_for_item("<START>")
            stop = tagger.label_dictionary.get_idx_for_item("<STOP>")
            self.register_buffer("transitions", flair_trans.t().clone())
            self.register_buffer("start", flair_trans[:, start].clone())
            self.register_buffer("end", flair_trans[stop, :].clone())
        self._np_crf = None  # numpy copies of transitions, start, end for decode_numpy
        self.eval()

    # ------------------------------------------------------------------ construction
    def _init_chars(self, member: CharacterEmbeddings) -> None:
        char_rnn = _float(member.char_rnn, "the char LSTM", (nn.LSTM,))
        self.char_dictionary = member.char_dictionary
        self.char_unk = 0 if member.char_dictionary.add_unk else None
        self.flair_char_order = not isinstance(member, BatchedCharacterEmbeddings)
        self.char_index = {item.decode("utf-8"): i for item, i in member.char_dictionary.item2idx.items()}
        self.char_weight = nn.Parameter(member.char_embedding.weight.detach().clone(), requires_grad=False)
        self.char_fwd = _single_direction(char_rnn, 0, False, char_rnn.input_size)
        self.char_bwd = _single_direction(char_rnn, 0, True, char_rnn.input_size)

    @classmethod
    def from_tagger(cls, tagger: DistillableTagger) -> "FastTagger":
        return cls(tagger)

    @property
    def has_chars(self) -> bool:
        return self.char_dictionary is not None

    @property
    def device(self) -> torch.device:
        return self.linear.weight.device

    # ------------------------------------------------------------------ Python side: texts -> ids
    def tensorize(self, sentences: Sequence[Sequence[str]], unique: bool = True) -> FastBatch:
        """Ids of a batch of non-empty token lists (token texts), in the given order. With `unique`, the
        characters of each distinct token of the batch once (``char_ids [U, C]``, longest first) and
        ``char_index [B, N]``; otherwise ``char_ids [B, N, C]`` position by position."""
        enc = self.encoder.encode(sentences, unique=unique)
        batch, longest = len(enc.lengths), enc.longest
        word_ids = torch.tensor(enc.word_ids, dtype=torch.long).view(batch, longest, len(self.word_vocabs))
        char_ids = torch.tensor(enc.char_ids, dtype=torch.long).view(enc.char_shape)
        char_index = (None if enc.char_index is None else
                      torch.tensor(enc.char_index, dtype=torch.long).view(batch, longest))
        ngram_ids = ngram_offsets = None
        if self._ft:  # the n-gram bags of the words a fastText table lacks, in token order, as it builds them
            ngram_ids, ngram_offsets = [], []
            for member, table in zip(self._ft, (t for t, kind in enumerate(self.word_kinds) if kind == "fasttext")):
                flat: List[int] = []
                offsets: List[int] = []
                for words in sentences:
                    for word in words:
                        if self.encoder.word_index(table, word) < 0:
                            offsets.append(len(flat))
                            flat.extend(member._lookup(word)[1])
                ngram_ids.append(torch.tensor(flat, dtype=torch.long))
                ngram_offsets.append(torch.tensor(offsets, dtype=torch.long))
        return FastBatch(word_ids, char_ids, torch.tensor(enc.lengths, dtype=torch.long), char_index, ngram_ids,
                         ngram_offsets)

    # ------------------------------------------------------------------ the graph
    def embed(self, word_ids: torch.Tensor, char_ids: torch.Tensor, char_index=None, ngram_ids=None,
              ngram_offsets=None):
        """``[B, N, E]`` embeddings (Flair's sentence tensor on real positions; finite values on padding)."""
        if word_ids.dim() == 2:
            word_ids = word_ids.unsqueeze(-1)
        batch, n = word_ids.shape[0], word_ids.shape[1]
        device = self.device
        parts = []
        ft = 0
        for kind, table in self.pieces:
            if kind == "char":
                parts.append(self._chars(char_ids.to(device), char_index, batch, n))
                continue
            weight = self.word_weights[table]
            ids = word_ids[..., table].to(weight.device)
            if kind == "word":
                vectors = self.layer_norms[table](F.embedding(ids, weight))
            else:
                oov = (ids < 0).unsqueeze(-1)  # no word vector: the mean of its n-gram vectors, zeros without any
                vectors = F.embedding(ids.clamp(min=0), weight).masked_fill(oov, 0.0)
                if ngram_ids is not None and ngram_ids[ft].numel():
                    bags = F.embedding_bag(ngram_ids[ft].to(weight.device), self.ngram_weights[ft],
                                           ngram_offsets[ft].to(weight.device), mode="mean")
                    vectors = vectors.masked_scatter(oov.expand_as(vectors), bags.to(vectors.dtype))
                ft += 1
            parts.append(vectors.to(device))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def _chars(self, char_ids: torch.Tensor, char_index: Optional[torch.Tensor], batch: int, n: int):
        tokens = char_ids.reshape(-1, char_ids.shape[-1])
        last = ((tokens >= 0).sum(-1) - 1).clamp(min=0).view(-1, 1, 1)
        x = F.embedding(tokens.clamp(min=0), self.char_weight)  # [T, C, E]
        # the forward direction runs over the padding too (for these small LSTMs faster than a packed sequence,
        # and a graph ONNX can export); its output at the last character is what Flair keeps
        out, _ = self.char_fwd(x)
        forward = out.gather(1, last.expand(-1, 1, out.shape[-1])).squeeze(1)
        backward, _ = self.char_bwd(x.gather(1, last.expand(-1, 1, x.shape[-1])))  # one step, zero state
        chars = torch.cat([forward, backward.squeeze(1)], dim=-1)
        if char_index is None:
            return chars.view(batch, n, -1)
        return F.embedding(char_index.to(chars.device), chars)

    def emissions(self, word_ids: torch.Tensor, char_ids: torch.Tensor, lengths: torch.Tensor,
                  char_index=None, ngram_ids=None, ngram_offsets=None) -> torch.Tensor:
        """``[B, N, K]`` emission scores (the tagger's ``forward`` in eval mode on real positions)."""
        x = self.embed(word_ids, char_ids, char_index, ngram_ids, ngram_offsets)
        if self.embedding2nn is not None:
            x = self.embedding2nn(x)
        lengths = lengths.to(x.device)
        for directions in self.rnn_layers:
            forward, _ = directions[0](x)
            if len(directions) == 2:
                backward, _ = directions[1](_reverse_within(x, lengths))
                x = torch.cat([forward, _reverse_within(backward, lengths)], dim=-1)
            else:
                x = forward
        return self.linear(x)

    def decode(self, emissions: torch.Tensor, lengths: torch.Tensor, probabilities: bool = True):
        """Best tags ``[B, N]`` (-1 on padding) and, when asked, per-token probabilities ``[B, N, K]`` (CRF
        marginals, or the softmax of a MaxEnt tagger), as ``DistillableTagger.predict`` computes them."""
        lengths = lengths.to(emissions.device)
        if self.use_crf:
            crf = LinearChainCRF(emissions, self.transitions, lengths, self.start, self.end)
            return crf.argmax, (crf.marginals if probabilities else None)
        probs = torch.softmax(emissions, dim=-1)
        tags = probs.argmax(-1)
        pad = torch.arange(tags.shape[1], device=tags.device).unsqueeze(0) >= lengths.unsqueeze(1)
        return tags.masked_fill(pad, -1), (probs if probabilities else None)

    def forward(self, word_ids: torch.Tensor, char_ids: torch.Tensor, lengths: torch.Tensor,
                char_index=None, ngram_ids=None, ngram_offsets=None) -> torch.Tensor:
        """Best tag ids ``[B, N]`` (-1 on padding) of the sentences that :meth:`tensorize` made these tensors
        of (``word_ids`` may be ``[B, N]`` for one word table)."""
        emissions = self.emissions(word_ids, char_ids, lengths, char_index, ngram_ids, ngram_offsets)
        return self.decode(emissions, lengths, probabilities=False)[0]

    # ------------------------------------------------------------------ Flair sentences
    @torch.no_grad()
    def tag(self, sentences: Sequence[Sequence[str]]) -> List[List[str]]:
        """Tag names for token lists (empty lists give [])."""
        out: List[List[str]] = [[] for _ in sentences]
        todo = [i for i, words in enumerate(sentences) if len(words)]
        if todo:
            batch = self.tensorize([sentences[i] for i in todo])
            tags, _ = self.decode_numpy(self.emissions(*batch), batch.lengths, probabilities=False)
            for i, row, n in zip(todo, tags.tolist(), batch.lengths.tolist()):
                out[i] = [self.label_names[t] for t in row[:n]]
        return out

    @torch.no_grad()
    def predict(self, sentences: Union[List[Sentence], Sentence], mini_batch_size: int = 32,
                return_probabilities_for_all_classes: bool = False, label_name: Optional[str] = None,
                force_token_predictions: bool = False) -> None:
        """Tag Flair sentences in place, writing what ``DistillableTagger.predict`` writes."""
        if label_name is None:
            label_name = self.tag_type
        if not sentences:
            return
        if not isinstance(sentences, list):
            sentences = [sentences] if isinstance(sentences, Sentence) else list(sentences)
        Sentence.set_context_for_sentences(sentences)
        reordered = sorted((s for s in sentences if len(s) > 0), key=len, reverse=True)
        for start in range(0, len(reordered), mini_batch_size):
            batch = reordered[start:start + mini_batch_size]
            tensors = self.tensorize([[token.text for token in sentence.tokens] for sentence in batch])
            emissions = self.emissions(*tensors)
            tags, probs = self.decode_numpy(emissions, tensors.lengths)
            self._write(batch, tags, probs, label_name, force_token_predictions,
                        return_probabilities_for_all_classes)

    def decode_numpy(self, emissions: torch.Tensor, lengths: torch.Tensor,
                     probabilities: bool = True) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """:meth:`decode` with the CRF's Viterbi and marginals in numpy (``skd_flair.tagging_runtime``): the same
        Viterbi recursion in the same float type as ``LinearChainCRF.argmax``, marginals in float64; far less
        per-step overhead than torch on ``[B, K, K]`` arrays."""
        if not self.use_crf:
            tags, probs = self.decode(emissions, lengths, probabilities)
            return tags.cpu().numpy(), (probs.cpu().numpy() if probabilities else None)
        em = emissions.detach().cpu().numpy()
        n = lengths.cpu().numpy()
        if self._np_crf is None:
            self._np_crf = tuple(x.detach().cpu().numpy().astype(em.dtype) for x in
                                 (self.transitions, self.start, self.end))
        return viterbi(em, n, *self._np_crf), (crf_marginals(em, n, *self._np_crf) if probabilities else None)

    def _write(self, batch: List[Sentence], tags: np.ndarray, probs: np.ndarray, label_name: str,
               force_token_predictions: bool, all_classes: bool) -> None:
        """``DistillableTagger._add_predictions`` with one gather and one ``tolist`` per batch."""
        names = self.label_names
        scores = np.take_along_axis(probs, np.maximum(tags, 0)[..., None], -1)[..., 0].tolist()
        tag_rows = tags.tolist()
        spans = self.predict_spans and not force_token_predictions
        all_probs = probs.tolist() if all_classes else None
        for b, sentence in enumerate(batch):
            sentence.remove_labels(label_name)
            n = len(sentence)
            write_labels(sentence, [names[i] for i in tag_rows[b][:n]], scores[b][:n], label_name, spans, names,
                         all_probs[b][:n] if all_probs is not None else None)


# ---------------------------------------------------------------------------------------------------------------

_CACHE: "weakref.WeakKeyDictionary[DistillableTagger, Tuple[tuple, FastTagger]]" = weakref.WeakKeyDictionary()


def _fingerprint(model: nn.Module) -> tuple:
    """Changes when a parameter or buffer is replaced or modified in place (an optimiser step, load_state_dict)."""
    return tuple((id(t), t._version) for t in (*model.parameters(), *model.buffers()))


def fast_tagger(model: DistillableTagger, emissions_only: bool = False) -> FastTagger:
    """The cached :class:`FastTagger` of `model`, rebuilt when the model's weights changed."""
    key = (_fingerprint(model), emissions_only)
    hit = _CACHE.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    fast = FastTagger(model, emissions_only=emissions_only)
    _CACHE[model] = (key, fast)
    return fast


def fast_predict(model: DistillableTagger, sentences: Union[List[Sentence], Sentence], mini_batch_size: int = 32,
                 return_probabilities_for_all_classes: bool = False, label_name: Optional[str] = None,
                 force_token_predictions: bool = False) -> None:
    """``model.predict(sentences, mini_batch_size)`` through the fast path: same labels, same format (for a
    parsing student, ``skd_flair.models.fast_parser``: heads and relations)."""
    from .dependency_tagger import DependencyTagger

    if isinstance(model, DependencyTagger):
        from .fast_parser import fast_parse

        fast_parse(model, sentences, mini_batch_size=mini_batch_size, label_name=label_name)
        return
    fast_tagger(model).predict(sentences, mini_batch_size=mini_batch_size,
                               return_probabilities_for_all_classes=return_probabilities_for_all_classes,
                               label_name=label_name, force_token_predictions=force_token_predictions)


# ---------------------------------------------------------------------------------------------------------------
# ONNX: the emission graph, and what a runner needs besides it

ONNX_FORMAT = "skd-flair-onnx-tagger"  # the "format" of the JSON file written beside model.onnx
ONNX_VERSION = 1


def onnx_input_names(fast: FastTagger) -> List[str]:
    """The inputs of the exported graph: ``word_ids [B, N, W]`` (when the tagger has word tables), ``char_ids
    [U, C]`` and ``char_index [B, N]`` (when it has CharacterEmbeddings), ``lengths [B]``; all int64."""
    return (["word_ids"] if fast.word_vocabs else []) + (["char_ids", "char_index"] if fast.has_chars else []) \
        + ["lengths"]


class OnnxEmissions(nn.Module):
    """``FastTagger.emissions`` over the inputs of :func:`onnx_input_names`, for ``torch.onnx.export``: the
    graph ends at the ``[B, N, K]`` emissions; decoding (a loop over positions) is left to the runner."""

    def __init__(self, fast: FastTagger):
        super().__init__()
        if "fasttext" in fast.word_kinds:
            raise UnsupportedTagger("ONNX export: fastText tables are not supported (a runner would need gensim's "
                                    "n-gram hashing for unknown words); use a Flair WordEmbeddings table")
        self.fast = fast
        self.names = onnx_input_names(fast)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        given = dict(zip(self.names, inputs))
        lengths = given["lengths"]
        char_ids, char_index = given.get("char_ids"), given.get("char_index")
        word_ids = given.get("word_ids")
        if word_ids is None:  # a characters-only tagger: no word table to look up
            word_ids = char_index.unsqueeze(-1)[..., :0]
        if char_ids is None:
            char_ids = word_ids[..., :0]
        return self.fast.emissions(word_ids, char_ids, lengths, char_index)


def runtime_config(fast: FastTagger) -> dict:
    """What ``skd_flair.onnx_runner`` needs beside the graph (JSON-serialisable): labels, decoding parameters,
    the word tables' words in row order and the character dictionary."""
    tables = []
    for vocab in fast.word_vocabs:
        words = sorted(vocab, key=vocab.__getitem__)
        if [vocab[w] for w in words] != list(range(len(words))):
            raise UnsupportedTagger("ONNX export: a word table's rows are not numbered 0..V-1")
        tables.append(words)
    crf = None
    if fast.use_crf:
        crf = {"transitions": fast.transitions.tolist(), "start": fast.start.tolist(), "end": fast.end.tolist()}
    chars = None
    if fast.has_chars:
        chars = {"index": fast.char_index, "unk": fast.char_unk, "flair_order": fast.flair_char_order}
    return {"format": ONNX_FORMAT, "version": ONNX_VERSION, "tag_type": fast.tag_type, "labels": fast.label_names,
            "predict_spans": fast.predict_spans, "crf": crf, "inputs": onnx_input_names(fast),
            "word_tables": tables, "chars": chars}
