"""Labelled non-overlapping spans (flat NER read as a semi-Markov model): exact log-partition, span
marginals, BIOES token marginals and the best span set.

A structure is a set of non-overlapping labelled spans ``(i, j, e)`` (tokens ``i..j`` inclusive, type
``e``); tokens outside every span are ``O`` and score 0, so ``score(Y) = sum of span_scores[i, j, e]``
over the spans of Y. Each set is exactly one valid BIOES tag sequence.

Internally the possible spans live in a band ``[B, N, W, E]``: ``band[b, j, c, e]`` is the span of
width ``c + 1`` that ends at token j (it starts at ``j - c``), ``-inf`` where no such span can be.

Recursion: ``alpha[m]`` is the log weight of every configuration of tokens ``0..m-1``, and
``alpha[j + 1] = logsumexp_c(alpha[j - c] + seg[j, c])``, where ``seg[j, c]`` is the logsumexp over types
of ``band[j, c]``, and ``seg[j, 0]`` also holds the O choice (weight ``exp(0)``). One step per token,
vectorised over the batch and the widths. Padding tokens can only be O, so ``alpha[N] = log Z`` for every
item without per-item bookkeeping, and the backward pass is the same recursion on the reversed sentence
(spans grouped by start). Span marginals are ``exp(alpha[i] + s(i, j, e) + beta[j + 1] - log Z)``; token
marginals are sums of span marginals (sums of nonnegative terms, never differences, so they cannot go
negative), and ``P(O at m) = exp(alpha[m] + beta[m + 1] - log Z)``.
"""
from __future__ import annotations

import operator
from typing import List, Optional, Sequence, Tuple

import torch

from .base import Structure, weighted_sum
from ._checks import StructureInputError, as_lengths, check_scores, check_shape, length_mask

__all__ = ["LabelledSpans"]

_ROLES = ("B", "I", "E", "S")
_NEG_INF = float("-inf")


# ---------------------------------------------------------------------- band helpers
def _skewed(x: torch.Tensor, shift: int, fill: float) -> torch.Tensor:
    """``y[b, m, c, ...] = x[b, m + c + shift, c, ...]`` (``fill`` past position N-1), as a strided view.

    Turns a band grouped by end into one grouped by start (shift 0) and lines up, for token m, the spans
    that end ``c + shift`` tokens after it.
    """
    batch, n, cols = x.shape[:3]
    padded = torch.cat([x, x.new_full((batch, cols + shift) + tuple(x.shape[2:]), fill)], 1)
    st = padded.stride()
    return padded.as_strided(x.shape, (st[0], st[1], st[1] + st[2]) + st[3:],
                             padded.storage_offset() + shift * st[1])


def _by_start(band: torch.Tensor) -> torch.Tensor:
    """Regroup a band by start: ``out[b, i, c] = band[b, i + c, c]`` (the span of width c + 1 starting at i)."""
    return _skewed(band, 0, _NEG_INF)


def _with_outside(r: torch.Tensor, combine) -> torch.Tensor:
    """Fold the O choice (log weight 0) into the width-1 column of ``r`` ``[B, N, W]``."""
    return torch.cat([combine(r[..., :1], r.new_zeros(())), r[..., 1:]], -1)


def _scan(r: torch.Tensor) -> torch.Tensor:
    """``[B, N + 1]`` alpha from ``r`` ``[B, N, W]`` (log weight of the spans ending at j, by width).

    ``alpha[j + 1] = logsumexp_c(alpha[j - c] + seg[j, c])`` with the O choice added to width 1.
    """
    batch, n, width = r.shape
    # [N, W, B], column k: width W - k, aligned with the window below
    seg = _with_outside(r, torch.logaddexp).flip(-1).permute(1, 2, 0)
    # buf[width - 1 + m] = alpha[m]; the width - 1 leading -inf stand for starts before token 0
    buf = r.new_full((width + n, batch), _NEG_INF)
    buf[width - 1] = 0.0
    if torch.is_grad_enabled() and r.requires_grad:
        for j in range(n):
            buf[width + j] = torch.logsumexp(buf[j:j + width] + seg[j], 0)
    else:
        seg = seg.contiguous()
        for j in range(n):  # each step writes straight into its row: one copy fewer per token
            torch.logsumexp(buf[j:j + width] + seg[j], 0, out=buf[width + j])
    return buf[width - 1:].t()


def _reversed(r: torch.Tensor) -> torch.Tensor:
    """``r`` of the reversed sentence: spans by start, positions reversed (= by end in the reversed order)."""
    return _by_start(r).flip(1)


def _beta(r: torch.Tensor) -> torch.Tensor:
    """``[B, N + 1]`` beta: ``beta[m]`` is the log weight of every configuration of tokens ``m..N-1``."""
    return _scan(_reversed(r)).flip(1)


def _alpha_beta(r: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Both scans as one, over a batch of 2B (the sequential steps dominate the cost)."""
    both = _scan(torch.cat([r, _reversed(r)], 0))
    return both[:r.shape[0]], both[r.shape[0]:].flip(1)


def _span_marginals(band: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """``[B, N, W, E]`` ``exp(alpha[j - c] + band[j, c, e] + beta[j + 1] - log Z)``; 0 where the band is -inf."""
    n, width = band.shape[1], band.shape[2]
    start = (torch.arange(n, device=band.device).unsqueeze(1) - torch.arange(width, device=band.device)).clamp(min=0)
    left = (alpha[:, start] - alpha[:, -1:].unsqueeze(-1)).unsqueeze(-1)  # [B, N, W, 1]
    right = beta[:, 1:].view(beta.shape[0], n, 1, 1)
    if torch.is_grad_enabled() and (band.requires_grad or alpha.requires_grad):
        return torch.exp(band + left + right)
    return (band + left).add_(right).exp_()


def _token_roles(p: torch.Tensor) -> torch.Tensor:
    """``[B, N, E, 4]`` B/I/E/S weights of every token from span weights ``p`` ``[B, N, W, E]`` (by end).

    Only sums of entries of ``p`` are formed, so nonnegative weights give nonnegative roles.
    """
    single = p[:, :, 0]
    end = p[:, :, 1:].sum(2)
    begin = _skewed(p[:, :, 1:], 1, 0.0).sum(2)  # the span of width c + 1 starting at m ends at m + c
    # token m is inside a span ending at m + d (d >= 1) iff its width is >= d + 2
    longer = p.flip(2).cumsum(2).flip(2)  # longer[j, c] = sum of widths >= c + 1 ending at j
    inside = _skewed(longer[:, :, 2:], 1, 0.0).sum(2)
    return torch.stack([begin, inside, end, single], -1)


class _SpanLogPartition(torch.autograd.Function):
    """log Z of a band whose backward pass is the span marginals (explicit backward scan, no taped loop)."""

    @staticmethod
    def forward(ctx, band):
        r = torch.logsumexp(band, -1)
        alpha = _scan(r)
        ctx.save_for_backward(band, r, alpha)
        return alpha[:, -1].clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        band, r, alpha = ctx.saved_tensors
        return _span_marginals(band, alpha, _beta(r)).mul_(grad.view(-1, 1, 1, 1))


def _as_width(max_width, n: int) -> int:
    if max_width is None:
        return n
    if isinstance(max_width, bool) or (torch.is_tensor(max_width) and max_width.dim() != 0):
        raise StructureInputError(f"max_width must be an integer >= 1 or None, got {max_width!r}")
    try:
        width = operator.index(max_width)
    except TypeError:
        raise StructureInputError(f"max_width must be an integer >= 1 or None, got {max_width!r}") from None
    if width < 1:
        raise StructureInputError(f"max_width must be >= 1, got {width}")
    return min(width, n)


class LabelledSpans(Structure):
    """A batch of distributions over sets of non-overlapping labelled spans (flat NER, semi-Markov).

    Args:
        span_scores: ``[B, N, N, E]``; ``[b, i, j, e]`` scores a span of type e over tokens ``i..j``
            (inclusive, 0-based) relative to leaving those tokens outside every span. Only entries with
            ``i <= j < lengths[b]`` and ``j - i + 1 <= max_width`` are used; the others are ignored,
            whatever they hold. Used entries may be ``-inf`` (impossible span), never NaN or ``+inf``.
        lengths: ``[B]`` sentence lengths in ``1..N`` (default: all N).
        max_width: the longest span, in tokens (default: no limit).

    ``P(Y)`` is proportional to ``exp(sum of the scores of the spans in Y)``. Every input is computed in
    float64 and float32 / half-precision results are returned in float32: the marginals subtract log Z, a
    sum over the whole sentence that float32 holds to ~7 digits (at scores of 1e6 token rows summed to 1.28
    in float32). float64 costs about a quarter more time here. Cost: O(B N W E) memory and work, N
    sequential steps (W = max width).
    """

    def __init__(self, span_scores: torch.Tensor, lengths=None, max_width: Optional[int] = None):
        if not torch.is_tensor(span_scores):
            raise StructureInputError(f"span_scores must be a tensor, got {type(span_scores).__name__}")
        if span_scores.dim() != 4 or span_scores.shape[1] != span_scores.shape[2]:
            raise StructureInputError(f"span_scores must have 4 dimensions [B, N, N, E] (start, end, type), "
                                      f"got shape {list(span_scores.shape)}")
        batch, n, _, num_types = span_scores.shape
        if batch == 0 or n == 0 or num_types == 0:
            raise StructureInputError(f"span_scores must be non-empty [B, N, N, E], got {list(span_scores.shape)}")
        if not span_scores.is_floating_point():
            raise StructureInputError(f"span_scores must be floating point, got dtype {span_scores.dtype}")
        width = _as_width(max_width, n)
        device = span_scores.device
        self.lengths = as_lengths(lengths, batch, n, device)
        self.mask = length_mask(self.lengths, n)
        self.batch_size, self.max_len, self.num_types, self.max_width = batch, n, num_types, width
        # band layout: [b, j, c] is the span (j - c, j)
        end = torch.arange(n, device=device).unsqueeze(1)
        start = end - torch.arange(width, device=device)  # [N, W]
        self._start = start.clamp(min=0)
        self._end = end.expand(n, width)
        self._band_cells = (start >= 0).nonzero(as_tuple=True)  # (end, width - 1) of every in-range cell
        #: ``[B, N, W]`` True where the span of width ``c + 1`` ending at token j is possible (band layout)
        self.band_mask = (start >= 0) & self.mask.unsqueeze(-1)
        self.dtype = torch.float64 if span_scores.dtype == torch.float64 else torch.float32  # of every result
        band = span_scores[:, self._start, self._end].to(torch.float64)  # [B, N, W, E], only the spans that can be
        band = band.masked_fill(~self.band_mask.unsqueeze(-1), _NEG_INF)
        check_scores(band, "span_scores", 4)  # NaN / +inf, only where a span can be
        if band.requires_grad:  # masking the caller's own -inf too keeps their gradient 0 instead of NaN
            band = band.masked_fill(band == _NEG_INF, _NEG_INF)
        self.band = band
        self._cache = {}

    # ------------------------------------------------------------------ layout
    @staticmethod
    def bioes_tags(type_names: Sequence[str]) -> List[str]:
        """The tag of every ``token_marginals`` column: ``["O", "B-t0", "I-t0", "E-t0", "S-t0", "B-t1", ...]``.

        Column ``1 + 4 * e + k`` is role ``"BIES"[k]`` of type e; column 0 is O.
        """
        return ["O"] + [f"{role}-{name}" for name in type_names for role in _ROLES]

    @property
    def span_mask(self) -> torch.Tensor:
        """``[B, N, N]`` True where a span ``(i, j)`` is possible (any type)."""
        return self._to_dense(self.band_mask)

    def _to_dense(self, band: torch.Tensor) -> torch.Tensor:
        """``[B, N, W, ...]`` band -> ``[B, N, N, ...]`` (start, end), zero (False) where no span can be."""
        ends, cols = self._band_cells
        out = band.new_zeros((self.batch_size, self.max_len, self.max_len) + tuple(band.shape[3:]))
        out[:, ends - cols, ends] = band[:, ends, cols]
        return out

    # ------------------------------------------------------------------ inference
    def _needs_graph(self) -> bool:
        return torch.is_grad_enabled() and self.band.requires_grad

    def _cached(self, name, make):
        key = (name, self._needs_graph())
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _r(self):
        return self._cached("r", lambda: torch.logsumexp(self.band, -1))

    def _alpha(self):
        if ("alpha_beta", self._needs_graph()) in self._cache:
            return self._alpha_beta()[0]
        return self._cached("alpha", lambda: _scan(self._r()))

    def _alpha_beta(self):
        def make():
            if ("alpha", self._needs_graph()) in self._cache:  # log Z came first: only beta is missing
                return self._alpha(), _beta(self._r())
            return _alpha_beta(self._r())
        return self._cached("alpha_beta", make)

    @property
    def log_partition(self) -> torch.Tensor:
        """``[B]`` log Z, differentiable in ``span_scores`` (its gradient is the span marginals)."""
        if self._needs_graph():
            return _SpanLogPartition.apply(self.band).to(self.dtype)
        return self._alpha()[:, -1].to(self.dtype)

    def _band_marginals(self):
        return self._cached("band_marginals", lambda: _span_marginals(self.band, *self._alpha_beta()))

    @property
    def marginals(self) -> torch.Tensor:
        """``[B, N, N, E]`` P(span ``(i, j, e)`` is in Y); zero where impossible."""
        return self._cached("marginals", lambda: self._to_dense(self._band_marginals()).to(self.dtype))

    @property
    def token_marginals(self) -> torch.Tensor:
        """``[B, N, 1 + 4E]`` P(token m has each BIOES tag), columns as in :meth:`bioes_tags`.

        Rows sum to 1 on real tokens; padding rows are zero.
        """
        def make():
            alpha, beta = self._alpha_beta()
            outside = torch.exp(alpha[:, :-1] + beta[:, 1:] - alpha[:, -1:])  # [B, N]
            roles = _token_roles(self._band_marginals())
            out = torch.cat([outside.unsqueeze(-1), roles.flatten(2)], -1)
            return (out * self.mask.unsqueeze(-1).to(out.dtype)).to(self.dtype)
        return self._cached("token_marginals", make)

    # ------------------------------------------------------------------ scoring
    def expected_score(self, span_marginals: torch.Tensor) -> torch.Tensor:
        """``[B]`` ``sum q(i, j, e) * score(i, j, e)`` over possible spans, for weights q ``[B, N, N, E]``.

        With a 0/1 indicator of a span set (such as :attr:`argmax`) this is the score of that set.
        Weights on impossible spans are ignored.
        """
        check_shape(span_marginals, "span_marginals",
                    (self.batch_size, self.max_len, self.max_len, self.num_types))
        q = span_marginals[:, self._start, self._end].to(self.band.dtype)
        q = torch.where(self.band_mask.unsqueeze(-1), q, q.new_zeros(()))
        return weighted_sum(q, self.band, (1, 2, 3)).to(self.dtype)

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def _viterbi(self) -> List[List[Tuple[int, int, int]]]:
        """Max-product version of the forward scan, then a backtrack over the chosen widths."""
        if "viterbi" in self._cache:
            return self._cache["viterbi"]
        band, width = self.band.detach(), self.max_width
        batch, n = self.batch_size, self.max_len
        best, best_type = band.max(-1)  # [B, N, W]
        seg = _with_outside(best, torch.maximum).flip(-1)
        single_is_o = best[:, :, 0] <= 0  # ties go to O (fewer spans)
        seg = seg.permute(1, 2, 0).contiguous()  # [N, W, B]
        buf = band.new_full((width + n, batch), _NEG_INF)
        buf[width - 1] = 0.0
        pointer = torch.empty(n, batch, dtype=torch.long, device=band.device)
        for j in range(n):
            torch.max(buf[j:j + width] + seg[j], 0, out=(buf[width + j], pointer[j]))
        pointer = pointer.t()
        cols = (width - 1) - pointer  # chosen width - 1 of the segment ending at j
        chosen = best_type.gather(2, cols.unsqueeze(-1)).squeeze(-1)
        chosen = chosen.masked_fill((cols == 0) & single_is_o, -1)  # -1: the token is O
        cols, chosen, lengths = cols.tolist(), chosen.tolist(), self.lengths.tolist()
        out = []
        for b in range(batch):
            spans, m, col, typ = [], lengths[b], cols[b], chosen[b]
            while m > 0:
                c, t = col[m - 1], typ[m - 1]
                if t >= 0:
                    spans.append((m - 1 - c, m - 1, t))
                m -= c + 1
            out.append(spans[::-1])
        self._cache["viterbi"] = out
        return out

    def decode(self) -> List[List[Tuple[int, int, int]]]:
        """The best span set of every item: ``(start, end inclusive, type)`` triples sorted by start."""
        return [list(spans) for spans in self._viterbi()]

    @property
    def argmax(self) -> torch.Tensor:
        """``[B, N, N, E]`` 0/1 indicator of the best span set (in the dtype of the scores)."""
        if "argmax" not in self._cache:
            self._cache["argmax"] = self.indicators(self._viterbi())[0]
        return self._cache["argmax"]

    @property
    def part_marginals(self) -> Tuple[torch.Tensor]:
        """(spans ``[B, N, N, E]``,)."""
        return (self.marginals,)

    def indicators(self, span_sets: Sequence[Sequence[Tuple[int, int, int]]]) -> Tuple[torch.Tensor]:
        """(``[B, N, N, E]`` 0/1 of the given span sets, in the dtype of the scores,)."""
        out = self.band.new_zeros((self.batch_size, self.max_len, self.max_len, self.num_types))
        index = [(b, i, j, e) for b, spans in enumerate(span_sets) for i, j, e in spans]
        if index:
            out[tuple(torch.tensor(index, device=out.device).t())] = 1.0
        return (out,)

    @property
    def best_bioes(self) -> torch.Tensor:
        """``[B, N]`` BIOES tag index (column of :meth:`bioes_tags`) of the best span set; -1 on padding."""
        if "best_bioes" not in self._cache:
            rows = []
            for spans in self._viterbi():
                row = [0] * self.max_len
                for i, j, e in spans:
                    if i == j:
                        row[i] = 4 + 4 * e
                    else:
                        row[i:j + 1] = [1 + 4 * e] + [2 + 4 * e] * (j - i - 1) + [3 + 4 * e]
                rows.append(row)
            tags = torch.tensor(rows, dtype=torch.long, device=self.band.device)
            self._cache["best_bioes"] = tags.masked_fill(~self.mask, -1)
        return self._cache["best_bioes"]
