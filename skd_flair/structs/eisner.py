"""Projective first-order dependency trees: Eisner's algorithm in log space (inside, outside, argmax).

Scores: ``arc_scores[b, h, d]`` is the score of the arc head h -> dependent d; index 0 is the root and the
words are 1..n (``lengths[b] = n``). Arcs into the root, self-loops and arcs touching padding are never part
of a tree, whatever their value.

Layout. Every chart item is a span (i, j), i <= j, of one of four kinds, all kept in one contiguous tensor
``chart[kind, i, j, b]`` (batch innermost, so every elementwise step runs over contiguous batch rows):

    C_l(i, j)  complete, head j: everything in i..j hangs (transitively) from j
    I_r(i, j)  incomplete, the arc i -> j, i..j covered
    I_l(i, j)  incomplete, the arc j -> i
    C_r(i, j)  complete, head i

Diagonal items (i, i) are 0 (log 1). One step per span width w computes, for all n = N+1-w start
positions at once (never a Python loop over positions),

    X(i, j)   = logsumexp_{k<w} C_r(i, i+k) + C_l(i+k+1, j)
    I_r(i, j) = X(i, j) + s(i -> j)            I_l(i, j) = X(i, j) + s(j -> i)
    C_l(i, j) = logsumexp_{k<w} C_l(i, i+k) + I_l(i+k, j)
    C_r(i, j) = logsumexp_{k<w} I_r(i, i+1+k) + C_r(i+1+k, j)

and log Z = C_r(0, n). Every operand is a strided view of the one chart (``span_view``, no copy); the two
operands of a left/right pair sit at a constant offset from each other, so a pair is one view with a
leading dimension of 2 as long as that offset is positive, which fixes the order of the kinds
(C_l < I_r < I_l < C_r). A width step is thus two reductions and two writes. The sums run in base 2
(``exp2``/``log2`` are several times faster than ``exp``/``log`` on CPU): scores enter the chart multiplied
by log2(e) and log Z leaves it multiplied by ln 2.

The outside pass is written out, not taped: each reduction keeps its shifted powers ``e`` and their sums
``s``, and the adjoint g of an item flows to its inputs as ``e * g / s``. Adjoints are probabilities (the
marginal of each item), so they cannot overflow; the arc adjoints are the arc marginals. The max semiring
runs the same two passes with the argmax as a one-hot weight (and byte-sized adjoints), which traces the
best tree.

Single root: the root's right-complete item C_r(0, w) is made impossible for every w but the sentence
length, so a root arc can only be built with no earlier root child.

Impossible is a large finite negative (``_NEG``), never -inf, so no reduction sees an all -inf row and no
0 * inf appears; user scores of -inf are clamped to it. Items over padding are computed but never reach
C_r(0, n), so their adjoints are exactly 0.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from ._checks import StructureInputError, as_lengths, check_scores, check_shape

__all__ = ["eisner_log_partition", "eisner_marginals", "eisner_log_partition_and_marginals", "eisner_argmax"]

_NEG = -1e30  # impossible: finite, far below any sum of +-1e4 scores, far above float32's limit
_LOG2E = 1.4426950408889634  # the log-sum-exp recursions run in base 2 (exp2 is several times faster than exp)
_LN2 = 0.6931471805599453

# chart kinds; the order matters (see the module docstring)
_CL, _IR, _IL, _CR = 0, 1, 2, 3


# ---------------------------------------------------------------------------------------------- helpers
def work_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


def check_arc_scores(arc_scores: torch.Tensor, lengths) -> Tuple[torch.Tensor, torch.Tensor]:
    """Validate ``[B, N+1, N+1]`` arc scores and ``[B]`` lengths; returns (scores, long lengths)."""
    check_scores(arc_scores, "arc_scores", 3)
    batch, size, size2 = arc_scores.shape
    if batch == 0 or size < 2:
        raise StructureInputError(
            f"arc_scores must be [B, N+1, N+1] with B >= 1 and N >= 1, got {list(arc_scores.shape)}")
    check_shape(arc_scores, "arc_scores", (batch, size, size))
    return arc_scores, as_lengths(lengths, batch, size - 1, arc_scores.device)


def span_view(chart: torch.Tensor, items: Sequence[Tuple[int, int, int]], n: int, w: Optional[int] = None,
              along: str = "col") -> torch.Tensor:
    """A strided view of ``chart`` (logical ``[K, S, S, B]``) over spans, without copying.

    ``items`` holds one or two ``(kind, i0, j0)``: entry ``[d, i, k, b]`` (d only with two items, k only
    with ``w``) is ``chart[kind_d, i0_d + i, j0_d + i (+ k if along == 'col'), b]`` with ``+ k`` going to the
    start instead when ``along == 'row'``. The offset between the two items must be positive.
    """
    sc, si, sj, sb = chart.stride()
    offsets = [c * sc + i0 * si + j0 * sj for c, i0, j0 in items]
    sizes: List[int] = []
    strides: List[int] = []
    if len(items) == 2:
        sizes.append(2)
        strides.append(offsets[1] - offsets[0])
    sizes.append(n)
    strides.append(si + sj)
    if w is not None:
        sizes.append(w)
        strides.append(sj if along == "col" else si)
    sizes.append(chart.shape[3])
    strides.append(sb)
    return chart.as_strided(sizes, strides, chart.storage_offset() + offsets[0])


def new_chart(kinds: int, size: int, batch: int, dtype, device) -> torch.Tensor:
    """Zeros, ``[kinds, size, size, batch]``."""
    return torch.zeros(kinds, size, size, batch, dtype=dtype, device=device)


def arc_pair_view(arcs: torch.Tensor, w: int) -> torch.Tensor:
    """``[2, n, B]`` view of logical ``[h, d, B]`` arcs: ``[0, i] = s(i -> i+w)``, ``[1, i] = s(i+w -> i)``."""
    sh, sd, sb = arcs.stride()
    n = arcs.shape[0] - w
    return arcs.as_strided((2, n, arcs.shape[2]), (w * (sh - sd), sh + sd, sb), arcs.storage_offset() + w * sd)


def unit(use_max: bool) -> float:
    """What the scores are multiplied by in the chart: log2(e) for the (base-2) sum, 1 for the max."""
    return 1.0 if use_max else _LOG2E


def reduce(t: torch.Tensor, dim: int, use_max: bool, keep: bool):
    """Base-2 log-sum-exp (or max) of ``t`` over ``dim``, consuming ``t``; returns (value, what the
    backward needs): the shifted powers of two and their sums, or the argmax."""
    if use_max:
        value, idx = t.max(dim)
        return value, (idx if keep else None)
    m = t.amax(dim, keepdim=True)
    e = t.sub_(m).exp2_()
    s = e.sum(dim)
    value = s.log2().add_(m.squeeze(dim))
    return value, ((e, s) if keep else None)


def spread(saved, g: torch.Tensor, dim: int, use_max: bool, width: int) -> torch.Tensor:
    """The adjoints of a reduction's inputs (``width`` of them along ``dim``) given the adjoint ``g`` of its
    output: softmax weights times g for log-sum-exp, g at the argmax for max."""
    if use_max:
        shape = list(g.shape)
        shape.insert(dim, width)
        return g.new_zeros(shape).scatter_(dim, saved.unsqueeze(dim), g.unsqueeze(dim))
    e, s = saved
    return e * (g / s).unsqueeze(dim)


def adjoint_dtype(arcs: torch.Tensor, use_max: bool) -> torch.dtype:
    """The outside pass of the max traces one tree: its adjoints are 0 or 1, so bytes hold them."""
    return torch.uint8 if use_max else arcs.dtype


def root_item(chart: torch.Tensor, kind: int, lengths: torch.Tensor) -> torch.Tensor:
    """``[B]`` the item ``chart[kind, 0, lengths[b], b]`` of a base-2 sum chart, in natural log units."""
    return chart[kind, 0][lengths, torch.arange(lengths.shape[0], device=lengths.device)] * _LN2


def seed_root(chart_like: torch.Tensor, kind: int, lengths: torch.Tensor, seed: torch.Tensor) -> None:
    chart_like[kind, 0][lengths, torch.arange(lengths.shape[0], device=lengths.device)] = seed


def heads_from_arcs(arc_adjoint: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[B, N+1]`` heads from a 0/1 ``[B, N+1, N+1]`` tree indicator; -1 at 0 and on padding."""
    heads = arc_adjoint.to(torch.int32).argmax(1)
    pos = torch.arange(heads.shape[1], device=heads.device)
    words = (pos >= 1) & (pos.unsqueeze(0) <= lengths.unsqueeze(1))
    return torch.where(words, heads, torch.full_like(heads, -1))


# ---------------------------------------------------------------------------------------------- passes
def _prepare(arc_scores: torch.Tensor) -> torch.Tensor:
    """Working arcs, logical ``[h, d, B]``: finite, in the working dtype, detached."""
    dtype = work_dtype(arc_scores)
    return arc_scores.detach().to(dtype).clamp(min=_NEG).permute(1, 2, 0).contiguous()


def _inside(arcs: torch.Tensor, lengths: torch.Tensor, single_root: bool, use_max: bool, keep: bool):
    """Eisner inside pass; returns (chart, saved per width or None)."""
    size, batch = arcs.shape[0], arcs.shape[2]
    chart = new_chart(4, size, batch, arcs.dtype, arcs.device)
    saved = [] if keep else None
    scale = unit(use_max)
    not_last = (torch.arange(size, device=lengths.device).unsqueeze(1) != lengths.unsqueeze(0))  # [S, B]
    for w in range(1, size):
        n = size - w
        t = span_view(chart, [(_CR, 0, 0)], n, w, "col") + span_view(chart, [(_CL, 1, w)], n, w, "row")
        x, sx = reduce(t, 1, use_max, keep)
        span_view(chart, [(_IR, 0, w), (_IL, 0, w)], n).copy_(torch.add(x, arc_pair_view(arcs, w), alpha=scale))
        t = (span_view(chart, [(_CL, 0, 0), (_IR, 0, 1)], n, w, "col")
             + span_view(chart, [(_IL, 0, w), (_CR, 1, w)], n, w, "row"))
        y, sy = reduce(t, 2, use_max, keep)
        if single_root:
            y[1, 0].masked_fill_(not_last[w], _NEG)
        span_view(chart, [(_CL, 0, w), (_CR, 0, w)], n).copy_(y)
        if keep:
            saved.append((sx, sy))
    return chart, saved


def _outside(arcs: torch.Tensor, lengths: torch.Tensor, single_root: bool, use_max: bool, saved,
             seed: torch.Tensor) -> torch.Tensor:
    """Adjoints of the arcs (``[B, N+1, N+1]``) given the adjoint ``seed`` ``[B]`` of log Z (or max)."""
    size, batch = arcs.shape[0], arcs.shape[2]
    dtype = adjoint_dtype(arcs, use_max)
    grad = new_chart(4, size, batch, dtype, arcs.device)
    seed_root(grad, _CR, lengths, seed.to(dtype))
    arc_grad_hd = torch.zeros(size, size, batch, dtype=dtype, device=arcs.device)
    is_last = (torch.arange(size, device=lengths.device).unsqueeze(1) == lengths.unsqueeze(0)).to(dtype)
    for w in range(size - 1, 0, -1):
        n = size - w
        sx, sy = saved[w - 1]
        gy = span_view(grad, [(_CL, 0, w), (_CR, 0, w)], n)
        if single_root:
            gy[1, 0].mul_(is_last[w])
        p = spread(sy, gy, 2, use_max, w)
        span_view(grad, [(_CL, 0, 0), (_IR, 0, 1)], n, w, "col").add_(p)
        span_view(grad, [(_IL, 0, w), (_CR, 1, w)], n, w, "row").add_(p)
        gi = span_view(grad, [(_IR, 0, w), (_IL, 0, w)], n)
        arc_pair_view(arc_grad_hd, w).copy_(gi)
        gx = gi[0] + gi[1]
        p = spread(sx, gx, 1, use_max, w)
        span_view(grad, [(_CR, 0, 0)], n, w, "col").add_(p)
        span_view(grad, [(_CL, 1, w)], n, w, "row").add_(p)
    return arc_grad_hd.permute(2, 0, 1).contiguous()


class _EisnerLogPartition(torch.autograd.Function):
    """log Z whose backward pass is the explicit outside pass."""

    @staticmethod
    def forward(ctx, arc_scores, lengths, single_root):
        arcs = _prepare(arc_scores)
        chart, saved = _inside(arcs, lengths, single_root, False, True)
        ctx.state = (arcs, saved)
        ctx.lengths, ctx.single_root, ctx.dtype = lengths, single_root, arc_scores.dtype
        return root_item(chart, _CR, lengths)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        arcs, saved = ctx.state
        g = _outside(arcs, ctx.lengths, ctx.single_root, False, saved, grad)
        return g.to(ctx.dtype), None, None


# ---------------------------------------------------------------------------------------------- API
def eisner_log_partition(arc_scores: torch.Tensor, lengths=None, single_root: bool = True) -> torch.Tensor:
    """``[B]`` log of the sum over projective trees of exp(sum of their arc scores).

    Differentiable w.r.t. ``arc_scores`` (the gradient is the arc marginals, from an explicit outside
    pass). Computed in the scores' dtype (float32 or float64; other dtypes in float32).
    """
    arc_scores, lengths = check_arc_scores(arc_scores, lengths)
    if torch.is_grad_enabled() and arc_scores.requires_grad:
        return _EisnerLogPartition.apply(arc_scores, lengths, single_root)
    with torch.no_grad():
        chart, _ = _inside(_prepare(arc_scores), lengths, single_root, False, False)
        return root_item(chart, _CR, lengths)


def eisner_log_partition_and_marginals(arc_scores: torch.Tensor, lengths=None, single_root: bool = True
                                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(log Z ``[B]``, marginals ``[B, N+1, N+1]``) from one inside and one outside pass; no graph."""
    arc_scores, lengths = check_arc_scores(arc_scores, lengths)
    with torch.no_grad():
        arcs = _prepare(arc_scores)
        chart, saved = _inside(arcs, lengths, single_root, False, True)
        log_z = root_item(chart, _CR, lengths)
        marg = _outside(arcs, lengths, single_root, False, saved, torch.ones_like(log_z))
    return log_z, marg


def eisner_marginals(arc_scores: torch.Tensor, lengths=None, single_root: bool = True) -> torch.Tensor:
    """``[B, N+1, N+1]`` arc marginals ``P(head(d) = h)``, zero on impossible arcs; no autograd graph."""
    return eisner_log_partition_and_marginals(arc_scores, lengths, single_root)[1]


def eisner_argmax(arc_scores: torch.Tensor, lengths=None, single_root: bool = True) -> torch.Tensor:
    """``[B, N+1]`` heads of the highest-scoring projective tree; -1 at position 0 and on padding."""
    arc_scores, lengths = check_arc_scores(arc_scores, lengths)
    with torch.no_grad():
        arcs = _prepare(arc_scores)
        chart, saved = _inside(arcs, lengths, single_root, True, True)
        best = _outside(arcs, lengths, single_root, True, saved, torch.ones(arcs.shape[2], device=arcs.device))
    return heads_from_arcs(best, lengths)
