"""Flair's token rules and tagger decoding in plain Python and numpy (no torch, no flair).

Shared by the fast inference path (``skd_flair.models.fast_tagger``) and the ONNX runner
(``skd_flair.onnx_runner``), so both turn texts into ids and decode the same way:

- :func:`flair_word_index`: Flair ``WordEmbeddings``' word lookup (the word, its lowercase form, that form with
  digits as ``#``, then as ``0``; else the unknown row, ``len(vocab)``);
- :func:`char_sources`: which token's characters Flair's ``CharacterEmbeddings`` embeds at each position (its
  reordering quirk for repeated tokens);
- :class:`Encoder`: a batch of token lists -> flat id lists (word ids per table, the characters of each distinct
  token, each position's row), with per-word caches;
- :func:`viterbi`: ``skd_flair.structs.LinearChainCRF.argmax`` step for step in the emissions' float type (the
  same additions in the same order, so the same path), :func:`crf_marginals`: the CRF's per-token marginals
  (forward-backward in float64 log space), :func:`softmax`;
- :func:`spans_from_bio`: Flair's ``get_spans_from_bio`` (BIOES/BIO tags -> spans with mean token scores).

Per step these are a few numpy calls on ``[B, K, K]`` arrays: for the small label sets of taggers far cheaper
than the same loops in torch, whose per-call overhead dominated decoding at batch size 1.
"""
from __future__ import annotations

import re
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Encoded", "Encoder", "char_sources", "crf_marginals", "flair_word_index", "softmax", "spans_from_bio",
           "viterbi"]

_DIGIT = re.compile(r"\d")


def flair_word_index(vocab: Dict[str, int], word: str) -> int:
    """``WordEmbeddings.get_cached_token_index``: the word, lowercase, digits as ``#``, as ``0``, else unknown."""
    if word in vocab:
        return vocab[word]
    lower = word.lower()
    if lower in vocab:
        return vocab[lower]
    for form in (_DIGIT.sub("#", lower), _DIGIT.sub("0", lower)):
        if form in vocab:
            return vocab[form]
    return len(vocab)


def char_sources(char_ids: Sequence[Tuple[int, ...]]) -> List[int]:
    """For each token of a sentence, the token whose char embedding Flair's ``CharacterEmbeddings`` gives it.

    Flair embeds the tokens sorted by length (stable, longest first) and maps sorted position j back to
    ``d[j]`` = the *last* token with the same character ids; positions that no ``d[j]`` names keep the
    embedding at their own index *in sorted order*. So a token is its own source unless its character ids
    occur again later in the sentence; then its source is the token at its position in the sorted order."""
    n = len(char_ids)
    if len(set(char_ids)) == n:
        return list(range(n))
    last = {ids: i for i, ids in enumerate(char_ids)}
    order = sorted(range(n), key=lambda i: len(char_ids[i]), reverse=True)
    return [p if last[char_ids[p]] == p else order[p] for p in range(n)]


class Encoded(NamedTuple):
    """A batch as flat row-major id lists (see :meth:`Encoder.encode`)."""
    lengths: List[int]  # [B]
    longest: int  # N
    word_ids: List[int]  # [B, N, W]; padding 0; a fastText table gives -1 for a word it does not hold
    char_ids: List[int]  # [U, C] (unique) or [B, N, C]; -1 = padding
    char_shape: Tuple[int, ...]  # (U, C) or (B, N, C); (B, N, 0) without characters
    char_index: Optional[List[int]]  # [B, N] row of char_ids per position (unique only); padding 0


class Encoder:
    """Token texts -> ids by Flair's rules, with per-word caches.

    Args:
        word_vocabs: per word table, its ``word -> row`` dict.
        word_kinds: per table ``"word"`` (Flair ``WordEmbeddings``' lookup chain, unknown = ``len(vocab)``) or
            ``"fasttext"`` (exact key, else -1); default all ``"word"``.
        char_index: ``character -> id`` of the char dictionary (None: no character embeddings).
        char_unk: the id of an unknown character (``<unk>`` = 0 in a Flair ``Dictionary`` with ``add_unk``), or
            None to raise, as Flair does, on a character the dictionary lacks.
        flair_char_order: reproduce Flair ``CharacterEmbeddings``' reordering of repeated words
            (:func:`char_sources`); False for ``BatchedCharacterEmbeddings``, where every token is its own source.
    """

    def __init__(self, word_vocabs: Sequence[Dict[str, int]], word_kinds: Optional[Sequence[str]] = None,
                 char_index: Optional[Dict[str, int]] = None, char_unk: Optional[int] = None,
                 cache_size: int = 500_000, flair_char_order: bool = True):
        self.word_vocabs = list(word_vocabs)
        self.word_kinds = list(word_kinds or ["word"] * len(self.word_vocabs))
        self.char_index, self.char_unk = char_index, char_unk
        self.flair_char_order = flair_char_order
        self.cache_size = cache_size
        self._words: List[Dict[str, int]] = [{} for _ in self.word_vocabs]
        self._chars: Dict[str, Tuple[int, ...]] = {}

    @property
    def has_chars(self) -> bool:
        return self.char_index is not None

    def word_index(self, table: int, word: str) -> int:
        cache = self._words[table]
        index = cache.get(word)
        if index is None:
            vocab = self.word_vocabs[table]
            index = flair_word_index(vocab, word) if self.word_kinds[table] == "word" else vocab.get(word, -1)
            if len(cache) < self.cache_size:
                cache[word] = index
        return index

    def char_ids(self, word: str) -> Tuple[int, ...]:
        ids = self._chars.get(word)
        if ids is None:
            index, unk = self.char_index, self.char_unk
            if unk is not None:
                ids = tuple(index[c] if c in index else unk for c in word)
            else:
                missing = [c for c in word if c not in index]
                if missing:  # Flair raises IndexError for a dictionary without <unk>
                    raise IndexError(f"character {missing[0]!r} is not in the char dictionary (it has no <unk>)")
                ids = tuple(index[c] for c in word)
            if len(self._chars) < self.cache_size:
                self._chars[word] = ids
        return ids

    def encode(self, sentences: Sequence[Sequence[str]], unique: bool = True) -> Encoded:
        """Ids of a batch of non-empty token lists. With `unique`, the characters of each distinct token of the
        batch once, longest first, and each position's row; otherwise the characters position by position."""
        lengths = [len(words) for words in sentences]
        if not sentences or min(lengths) < 1:
            raise ValueError("encode needs at least one sentence and no empty sentence")
        longest, tables = max(lengths), len(self.word_vocabs)
        word_ids: List[int] = []
        pad_words = [0] * tables
        for words in sentences:
            for word in words:
                for table in range(tables):
                    word_ids.append(self.word_index(table, word))
            word_ids.extend(pad_words * (longest - len(words)))
        if not self.has_chars:
            return Encoded(lengths, longest, word_ids, [], (len(sentences), longest, 0), None)
        per_sentence = []
        for words in sentences:
            ids = [self.char_ids(word) for word in words]
            per_sentence.append([ids[i] for i in char_sources(ids)] if self.flair_char_order else ids)
        char_index = None
        if unique:
            rows = {x: None for ids in per_sentence for x in ids}  # distinct, in first-seen order
            tokens = sorted(rows, key=len, reverse=True)
            rows = {x: i for i, x in enumerate(tokens)}
            char_index = []
            for ids in per_sentence:
                char_index.extend(rows[x] for x in ids)
                char_index.extend([0] * (longest - len(ids)))
            width = len(tokens[0])
            shape: Tuple[int, ...] = (len(tokens), width)
        else:
            tokens = [x for ids in per_sentence for x in ids + [()] * (longest - len(ids))]
            width = max(len(x) for x in tokens)
            shape = (len(sentences), longest, width)
        chars: List[int] = []
        pad = [-1] * width
        for x in tokens:
            chars.extend(x)
            chars.extend(pad[:width - len(x)])
        return Encoded(lengths, longest, word_ids, chars, shape, char_index)


def _active_rows(lengths: np.ndarray, n: int) -> Tuple[np.ndarray, List[int]]:
    """The order that sorts the batch longest first (stable) and, per position t, how many of those sorted rows
    are still inside their sentence: each step then works on a prefix of rows, with no masking."""
    order = np.argsort(-lengths, kind="stable")
    return order, (lengths[:, None] > np.arange(n)[None, :]).sum(0).tolist()


def viterbi(emissions: np.ndarray, lengths: np.ndarray, transitions: np.ndarray, start: np.ndarray,
            end: np.ndarray) -> np.ndarray:
    """Best label sequences ``[B, N]`` (-1 on padding) of a linear-chain CRF: ``transitions[i, j]`` scores label
    i followed by j; ``start``/``end`` the first/last label (LinearChainCRF's layout and recursion)."""
    batch, n, _ = emissions.shape
    lengths = np.asarray(lengths)
    order, active = _active_rows(lengths, n)
    em = emissions[order]
    score = start + em[:, 0]
    pointers = []
    for t in range(1, n):
        k = active[t]
        cand = score[:k, :, None] + transitions  # [k, from, to]
        score[:k] = cand.max(1) + em[:k, t]
        pointers.append(cand.argmax(1))
    label = (score + end).argmax(1)
    tags = np.full((batch, n), -1, dtype=np.int64)
    for t in range(n - 1, -1, -1):
        k = active[t]
        tags[:k, t] = label[:k]
        if t:
            label[:k] = pointers[t - 1][np.arange(k), label[:k]]
    out = np.empty_like(tags)
    out[order] = tags
    return out


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = x.max(axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return np.log(np.exp(x - top).sum(axis)) + np.squeeze(top, axis)


def _forward_exp(em: np.ndarray, trans: np.ndarray, first: np.ndarray, active: List[int]) -> Optional[np.ndarray]:
    """alpha[b, t, j] = log sum over label prefixes ending in j at t (0 on padding), as one small matrix product
    per step in exp space (shifted by the running maximum and each column's largest transition), over the rows
    still inside their sentence (`active`: rows sorted longest first); None where a row underflowed (a -inf
    or NaN anywhere), for the caller to redo in log space."""
    col = trans.max(0)
    exp_trans = np.exp(trans - col)
    alpha = np.zeros_like(em)
    a = alpha[:, 0] = first + em[:, 0]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for t in range(1, em.shape[1]):
            k = active[t]
            top = a[:k].max(1, keepdims=True)
            a = alpha[:k, t] = np.log(np.exp(a[:k] - top) @ exp_trans) + (top + col) + em[:k, t]
    return alpha if np.isfinite(alpha).all() else None


def _forward_log(em: np.ndarray, trans: np.ndarray, first: np.ndarray) -> np.ndarray:
    alpha = np.empty_like(em)
    alpha[:, 0] = first + em[:, 0]
    for t in range(1, em.shape[1]):
        alpha[:, t] = _logsumexp(alpha[:, t - 1, :, None] + trans, 1) + em[:, t]
    return alpha


def _reverse_within(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    t = np.arange(x.shape[1])[None, :]
    index = np.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return np.take_along_axis(x, index[..., None], 1)


def crf_marginals(emissions: np.ndarray, lengths: np.ndarray, transitions: np.ndarray, start: np.ndarray,
                  end: np.ndarray) -> np.ndarray:
    """``[B, N, K]`` P(y_t = k) under the CRF (float64, each position normalised; zeros on padding).

    Forward-backward; the backward pass is the forward pass over each sentence reversed within its length with
    transposed transitions (as in LinearChainCRF), both in exp space with a log-space fallback."""
    lengths = np.asarray(lengths)
    n = emissions.shape[1]
    order, active = _active_rows(lengths, n)
    em, lengths = emissions[order].astype(np.float64), lengths[order]
    trans, start, end = (np.asarray(x, dtype=np.float64) for x in (transitions, start, end))
    alpha = _forward_exp(em, trans, start, active)
    if alpha is None:
        alpha = _forward_log(em, trans, start)
    rev = _reverse_within(em, lengths)
    # suffix sums including the emission at t, from the reversed sentence; beta = that minus the emission
    suffix = _forward_exp(rev, trans.T, end, active)
    if suffix is None:
        suffix = _forward_log(rev, trans.T, end)
    joint = alpha + _reverse_within(suffix, lengths) - em
    probs = np.exp(joint - _logsumexp(joint, 2)[..., None])
    probs[np.arange(n)[None, :] >= lengths[:, None]] = 0.0
    out = np.empty_like(probs)
    out[order] = probs
    return out


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def spans_from_bio(tags: List[str], scores: Optional[List[float]] = None) -> List[Tuple[List[int], float, str]]:
    """Flair 0.15.1's ``flair.data.get_spans_from_bio``, without flair: ``(token indices, mean score, type)``."""
    tags = list(tags) + ["O"]  # a dummy "O" closes the last span
    found: List[Tuple[List[int], float, str]] = []
    weights: Dict[str, float] = {}
    previous = "O-"
    span: List[int] = []
    span_scores: List[float] = []
    for idx, tag in enumerate(tags):
        if tag in ("", "O", "_"):
            tag = "O-"
        in_span = tag != "O-"
        starts = tag[:2] in {"B-", "S-"} or (in_span and previous[2:] != tag[2:]
                                              and (tag[:2] == "I-" or previous[2:] == "S-"))
        if (starts or not in_span) and span:
            found.append((span, sum(span_scores) / len(span_scores), max(weights, key=weights.__getitem__)))
            span, span_scores, weights = [], [], {}
        if in_span:
            span.append(idx)
            span_scores.append(scores[idx] if scores else 1.0)
            weights[tag[2:]] = weights.get(tag[2:], 0.0) + (1.1 if starts else 1.0)
        previous = tag
    return found
