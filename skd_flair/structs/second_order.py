"""Projective second-order (adjacent-sibling) dependency trees: exact inside, outside and argmax.

A tree scores the sum of its arc scores and of its adjacent-sibling scores (McDonald & Pereira 2006;
the second-order TreeCRF of Zhang et al. 2020): ``sib_scores[b, h, s, d]`` scores head h taking dependent
d right after dependent s on the same side of h (no other dependent of h between s and d); the dependent
closest to h on each side has ``s == h``.

The dynamic program adds a sibling item to Eisner's (see ``eisner.py`` for the layout):

    S(i, j)   = logsumexp_{i<=r<j} C_r(i, r) + C_l(r+1, j)                       (two facing halves)
    I_r(i, j) = s(i->j) + logsumexp( C_l(i+1, j) + sib(i, i, j),                  (j is i's first right dep.)
                                     I_r(i, r) + S(r, j) + sib(i, r, j)  for i<r<j )
    I_l(i, j) = s(j->i) + logsumexp( C_r(i, j-1) + sib(j, j, i),
                                     S(i, r) + I_l(r, j) + sib(j, r, i)  for i<r<j )

with C_l, C_r as in first order. The "first dependent" alternatives are folded into the sibling sums:
the S slot of the span about to be built temporarily holds the needed complete item (written right
after that item is computed, one width earlier) and the diagonal I items are 0, so both incomplete
kinds are one fused reduction over a strided view of the chart. The six kinds are ordered
C_l < I_r < S1 < S2 < I_l < C_r so that every fused pair of views sits at a positive offset (S1 and S2
are the same sibling item, stored twice because their first-dependent terms differ). Sibling scores are
read in place through a strided view of ``sib_scores``, never copied.

Single root: the root's incomplete items may only take their first dependent, so the root has one child.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .base import Structure
from .dependency import heads_indicator
from ._checks import StructureInputError, check_scores, check_shape, length_mask, require_trees
from .dependency import arc_mask
from .eisner import (_NEG, adjoint_dtype, arc_pair_view, check_arc_scores, eisner_argmax, eisner_log_partition,
                     eisner_log_partition_and_marginals, heads_from_arcs, new_chart, reduce, root_item,
                     seed_root, span_view, spread, unit, work_dtype)

__all__ = ["SiblingTree"]

# chart kinds; S1 / S2 hold the sibling item as read by right / left incomplete items
_CL, _IR, _S1, _S2, _IL, _CR = range(6)


def _sib_view(sib: torch.Tensor, w: int) -> torch.Tensor:
    """``[2, n, w, B]`` view of ``sib[b, h, s, d]``: ``[0, i, k] = sib(i, i+k, i+w)`` (right of head i, k = 0
    is the first dependent) and ``[1, i, k] = sib(i+w, i+1+k, i)`` (left of head i+w, k = w-1 the first)."""
    sb, sh, ss, sd = sib.stride()
    n = sib.shape[1] - w
    return sib.as_strided((2, n, w, sib.shape[0]), (w * (sh - sd) + ss, sh + ss + sd, ss, sb),
                          sib.storage_offset() + w * sd)


def _inside(arcs, sib, lengths, single_root: bool, use_max: bool, keep: bool):
    size, batch = arcs.shape[0], arcs.shape[2]
    chart = new_chart(6, size, batch, arcs.dtype, arcs.device)
    saved = [] if keep else None
    scale = unit(use_max)
    for w in range(1, size):
        n = size - w
        # incomplete items (first-dependent terms come from the S slots and the zero diagonal)
        t = (span_view(chart, [(_IR, 0, 0), (_S2, 0, 1)], n, w, "col")
             + span_view(chart, [(_S1, 0, w), (_IL, 1, w)], n, w, "row"))
        t.add_(_sib_view(sib, w), alpha=scale).clamp_(min=_NEG)
        if single_root:
            t[0, 0, 1:] = _NEG  # the root takes no second dependent
        y, si = reduce(t, 2, use_max, keep)
        span_view(chart, [(_IR, 0, w), (_IL, 0, w)], n).copy_(y.add_(arc_pair_view(arcs, w), alpha=scale))
        # sibling item (overwrites the first-dependent terms of this width)
        t = span_view(chart, [(_CR, 0, 0)], n, w, "col") + span_view(chart, [(_CL, 1, w)], n, w, "row")
        x, ss = reduce(t, 1, use_max, keep)
        span_view(chart, [(_S1, 0, w), (_S2, 0, w)], n).copy_(x.expand(2, n, batch))
        # complete items
        t = (span_view(chart, [(_CL, 0, 0), (_IR, 0, 1)], n, w, "col")
             + span_view(chart, [(_IL, 0, w), (_CR, 1, w)], n, w, "row"))
        c, sc = reduce(t, 2, use_max, keep)
        span_view(chart, [(_CL, 0, w), (_CR, 0, w)], n).copy_(c)
        if w < size - 1:
            # first-dependent terms of width w+1: C_l(i, j) for I_r(i-1, j), C_r(i, j) for I_l(i, j+1).
            # (i = 0 and j = N land in unused lower-triangle entries)
            span_view(chart, [(_S1, -1, w), (_S2, 0, w + 1)], n).copy_(c)
        if keep:
            saved.append((si, ss, sc))
    return chart, saved


def _outside(arcs, sib, lengths, single_root: bool, use_max: bool, saved, seed, want_sib: bool = True):
    """(arc adjoints ``[B, N+1, N+1]``, sibling adjoints ``[B, N+1, N+1, N+1]`` or None)."""
    size, batch = arcs.shape[0], arcs.shape[2]
    dtype = adjoint_dtype(arcs, use_max)
    grad = new_chart(6, size, batch, dtype, arcs.device)
    seed_root(grad, _CR, lengths, seed.to(dtype))
    arc_grad = torch.zeros(size, size, batch, dtype=dtype, device=arcs.device)
    sib_grad = torch.zeros(batch, size, size, size, dtype=dtype, device=arcs.device) if want_sib else None
    for w in range(size - 1, 0, -1):
        n = size - w
        si, ss, sc = saved[w - 1]
        gc = span_view(grad, [(_CL, 0, w), (_CR, 0, w)], n)
        if w < size - 1:
            gc = gc + span_view(grad, [(_S1, -1, w), (_S2, 0, w + 1)], n)
        p = spread(sc, gc, 2, use_max, w)
        span_view(grad, [(_CL, 0, 0), (_IR, 0, 1)], n, w, "col").add_(p)
        span_view(grad, [(_IL, 0, w), (_CR, 1, w)], n, w, "row").add_(p)
        gs_view = span_view(grad, [(_S1, 0, w), (_S2, 0, w)], n)
        gx = gs_view[0] + gs_view[1]
        gs_view.zero_()  # the slots held first-dependent terms before S was written
        p = spread(ss, gx, 1, use_max, w)
        span_view(grad, [(_CR, 0, 0)], n, w, "col").add_(p)
        span_view(grad, [(_CL, 1, w)], n, w, "row").add_(p)
        gi = span_view(grad, [(_IR, 0, w), (_IL, 0, w)], n)
        arc_pair_view(arc_grad, w).copy_(gi)
        p = spread(si, gi, 2, use_max, w)
        if want_sib:
            _sib_view(sib_grad, w).copy_(p)
        span_view(grad, [(_IR, 0, 0), (_S2, 0, 1)], n, w, "col").add_(p)
        span_view(grad, [(_S1, 0, w), (_IL, 1, w)], n, w, "row").add_(p)
    return arc_grad.permute(2, 0, 1).contiguous(), sib_grad


def _prepare(arc_scores, sib_scores):
    dtype = work_dtype(arc_scores)
    arcs = arc_scores.detach().to(dtype).clamp(min=_NEG).permute(1, 2, 0).contiguous()
    sib = sib_scores.detach().to(dtype)
    sb, sh, ss, sd = sib.stride()
    if min(sib.stride()) < 1 or not sh > sd:  # _sib_view needs positive strides and h slower than d
        sib = sib.contiguous()
    return arcs, sib


class _SiblingLogPartition(torch.autograd.Function):
    @staticmethod
    def forward(ctx, arc_scores, sib_scores, lengths, single_root):
        arcs, sib = _prepare(arc_scores, sib_scores)
        chart, saved = _inside(arcs, sib, lengths, single_root, False, True)
        ctx.state = (arcs, sib, saved)
        ctx.lengths, ctx.single_root = lengths, single_root
        ctx.dtypes = (arc_scores.dtype, sib_scores.dtype)
        return root_item(chart, _CR, lengths)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        arcs, sib, saved = ctx.state
        g_arc, g_sib = _outside(arcs, sib, ctx.lengths, ctx.single_root, False, saved, grad,
                                want_sib=ctx.needs_input_grad[1])
        return (g_arc.to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None,
                g_sib.to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None, None, None)


def sibling_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, N+1, N+1, N+1]`` True for possible sibling parts (h, s, d): a possible arc h -> d with s == h
    or s strictly between h and d."""
    idx = torch.arange(size, device=lengths.device)
    h, s, d = idx.view(-1, 1, 1), idx.view(1, -1, 1), idx.view(1, 1, -1)
    between = (s == h) | ((h < s) & (s < d)) | ((d < s) & (s < h))
    shape = (d >= 1) & (h != d) & between  # [N+1, N+1, N+1]
    inside = (idx.unsqueeze(0) <= lengths.unsqueeze(1))  # [B, N+1]
    ok = inside.view(-1, size, 1, 1) & inside.view(-1, 1, 1, size)  # s lies between h and d
    return shape.unsqueeze(0) & ok


def _safe_weighted_sum(q: torch.Tensor, s: torch.Tensor, mask: torch.Tensor, dims) -> torch.Tensor:
    zero = torch.zeros((), dtype=s.dtype, device=s.device)
    q = torch.where(mask, q.to(s.dtype), zero)
    prod = q * s
    return torch.where(q == 0, zero, prod).sum(dims)


class SiblingTree(Structure):
    """A batch of distributions over projective dependency trees with arc and adjacent-sibling scores.

    Args:
        arc_scores: ``[B, N+1, N+1]``, ``[b, h, d]`` = score of the arc h -> d (0 is the root, words 1..n).
        sib_scores: ``[B, N+1, N+1, N+1]``, ``[b, h, s, d]`` = score of h taking d right after s on the same
            side (``s == h`` for the dependent closest to h), or None for a first-order (Eisner) tree.
        lengths: ``[B]`` number of words (default N).
        single_root: exactly one word attaches to the root.

    Entries that cannot be part of a tree (arcs into the root, self-loops, padding, s not between h and d)
    are ignored whatever their value. Scores may hold -inf, never NaN or +inf. Computations run in the
    arc scores' dtype (float32 or float64; others in float32).
    """

    def __init__(self, arc_scores: torch.Tensor, sib_scores: Optional[torch.Tensor] = None, lengths=None,
                 single_root: bool = True):
        arc_scores, self.lengths = check_arc_scores(arc_scores, lengths)
        batch, size, _ = arc_scores.shape
        if sib_scores is not None:
            check_scores(sib_scores, "sib_scores", 4)
            check_shape(sib_scores, "sib_scores", (batch, size, size, size))
        self.arc_scores, self.sib_scores = arc_scores, sib_scores
        self.single_root = single_root
        self.dtype = work_dtype(arc_scores)
        self._cache = {}

    # ------------------------------------------------------------------ inference
    def _needs_graph(self) -> bool:
        return torch.is_grad_enabled() and any(
            x is not None and x.requires_grad for x in (self.arc_scores, self.sib_scores))

    @property
    def log_partition(self) -> torch.Tensor:
        """``[B]`` log Z, differentiable w.r.t. both score tensors."""
        if self.sib_scores is None:
            if self._needs_graph():
                return require_trees(eisner_log_partition(self.arc_scores, self.lengths, self.single_root),
                                     "log partition")
            return require_trees(self._first_order()[0], "log partition")
        if self._needs_graph():
            return require_trees(_SiblingLogPartition.apply(self.arc_scores, self.sib_scores, self.lengths,
                                                            self.single_root), "log partition")
        if "log_z" not in self._cache:
            with torch.no_grad():
                arcs, sib = _prepare(self.arc_scores, self.sib_scores)
                chart, _ = _inside(arcs, sib, self.lengths, self.single_root, False, False)
                self._cache["log_z"] = root_item(chart, _CR, self.lengths)
        return require_trees(self._cache["log_z"], "log partition")

    def _first_order(self):
        if "first_order" not in self._cache:
            self._cache["first_order"] = eisner_log_partition_and_marginals(self.arc_scores, self.lengths,
                                                                            self.single_root)
        return self._cache["first_order"]

    def _inside_outside(self):
        if "marginals" not in self._cache:
            sib_scores = self.sib_scores
            if sib_scores is None:
                size = self.arc_scores.shape[1]
                sib_scores = self.arc_scores.new_zeros(self.arc_scores.shape[0], size, size, size, dtype=self.dtype)
            with torch.no_grad():
                arcs, sib = _prepare(self.arc_scores, sib_scores)
                chart, saved = _inside(arcs, sib, self.lengths, self.single_root, False, True)
                log_z = root_item(chart, _CR, self.lengths)
                self._cache["log_z"] = log_z
                self._cache["marginals"] = _outside(arcs, sib, self.lengths, self.single_root, False, saved,
                                                    torch.ones_like(log_z))
        return self._cache["marginals"]

    @property
    def marginals(self) -> torch.Tensor:
        """``[B, N+1, N+1]`` arc marginals ``P(head(d) = h)``, zero on impossible arcs; no autograd graph."""
        if self.sib_scores is None:
            require_trees(self._first_order()[0], "distribution over trees")
            return self._first_order()[1]
        marginals = self._inside_outside()[0]
        require_trees(self._cache["log_z"], "distribution over trees")
        return marginals

    @property
    def sibling_marginals(self) -> torch.Tensor:
        """``[B, N+1, N+1, N+1]`` ``P(h takes d right after s)`` (``s == h``: d is h's closest dependent on its
        side); zero on impossible parts; no autograd graph."""
        sibling = self._inside_outside()[1]
        require_trees(self._cache["log_z"], "distribution over trees")
        return sibling

    @property
    def argmax(self) -> torch.Tensor:
        """``[B, N+1]`` heads of the best tree; -1 at position 0 and on padding."""
        if "argmax" not in self._cache:
            if self.sib_scores is None:
                heads = eisner_argmax(self.arc_scores, self.lengths, self.single_root)
            else:
                with torch.no_grad():
                    arcs, sib = _prepare(self.arc_scores, self.sib_scores)
                    _, saved = _inside(arcs, sib, self.lengths, self.single_root, True, True)
                    best, _ = _outside(arcs, sib, self.lengths, self.single_root, True, saved,
                                       arcs.new_ones(arcs.shape[2]), want_sib=False)
                heads = heads_from_arcs(best, self.lengths)
            with torch.no_grad():
                require_trees(self.score(heads).to(torch.float64), "best tree")
            self._cache["argmax"] = heads
        return self._cache["argmax"]

    # ------------------------------------------------------------------ the Structure convention
    @property
    def part_marginals(self) -> Tuple[torch.Tensor, ...]:
        """(arcs ``[B, N+1, N+1]``, sibling parts ``[B, N+1, N+1, N+1]``) (arcs only for a first-order tree)."""
        return (self.marginals,) if self.sib_scores is None else (self.marginals, self.sibling_marginals)

    def decode(self) -> torch.Tensor:
        return self.argmax

    def indicators(self, heads: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        arcs = heads_indicator(heads, self.lengths, self.dtype)
        if self.sib_scores is None:
            return (arcs,)
        sibs = self.sibling_parts(heads)
        out = torch.zeros(self.sib_scores.shape, dtype=self.dtype, device=heads.device)
        b, d = (sibs >= 0).nonzero(as_tuple=True)
        out[b, heads[b, d], sibs[b, d], d] = 1.0
        return arcs, out

    # ------------------------------------------------------------------ scoring
    def sibling_parts(self, heads: torch.Tensor) -> torch.Tensor:
        """``[B, N+1]`` the inner sibling of every word in the trees ``heads``: ``sibs[b, d]`` = the dependent
        of ``heads[b, d]`` right before d on the same side, or the head itself; -1 at 0 and on padding."""
        size = self.arc_scores.shape[1]
        check_shape(heads, "heads", (self.lengths.shape[0], size))
        words = length_mask(self.lengths + 1, size)
        words[:, 0] = False
        if bool(((heads < 0) | (heads >= size)).masked_select(words).any()):
            raise StructureInputError("heads must be in 0..N for every word")
        h = torch.where(words, heads, torch.full_like(heads, -1))
        idx = torch.arange(size, device=heads.device)
        child = h.unsqueeze(1) == idx.view(1, -1, 1)  # [b, head, m]: m is a dependent of head
        m = idx.view(1, 1, -1)
        head = idx.view(1, -1, 1)
        # right side: the last dependent of head before m, else head; left side: the first after m, else head
        right = torch.where(child & (m > head), m, head).cummax(2).values
        right = torch.cat([head.expand(h.shape[0], size, 1), right[..., :-1]], 2)
        left = torch.where(child & (m < head), m, head).flip(2).cummin(2).values.flip(2)
        left = torch.cat([left[..., 1:], head.expand(h.shape[0], size, 1)], 2)
        hh = h.clamp(min=0).unsqueeze(1)  # [b, 1, d]
        r = right.gather(1, hh).squeeze(1)
        l_ = left.gather(1, hh).squeeze(1)
        sibs = torch.where(idx.unsqueeze(0) > h, r, l_)
        return torch.where(words, sibs, torch.full_like(sibs, -1))

    def score(self, heads: torch.Tensor) -> torch.Tensor:
        """``[B]`` score of given trees (heads ``[B, N+1]``, entries at 0 and past the length ignored)."""
        sibs = self.sibling_parts(heads)
        words = sibs >= 0
        h, s = heads.clamp(min=0), sibs.clamp(min=0)
        arc = self.arc_scores.gather(1, h.unsqueeze(1)).squeeze(1)
        total = torch.where(words, arc, arc.new_zeros(())).sum(1)
        if self.sib_scores is not None:
            batch, size = h.shape
            d = torch.arange(size, device=h.device).expand(batch, size)
            b = torch.arange(batch, device=h.device).unsqueeze(1).expand(batch, size)
            part = self.sib_scores[b, h, s, d]
            total = total + torch.where(words, part, part.new_zeros(())).sum(1)
        return total

    def log_prob(self, heads: torch.Tensor) -> torch.Tensor:
        return self.score(heads) - self.log_partition

    def expected_score(self, arc_marginals: torch.Tensor, sib_marginals: Optional[torch.Tensor] = None
                       ) -> torch.Tensor:
        """``[B]`` ``sum_u q(u) s(u)`` over possible arcs and, given ``sib_marginals``, sibling parts.

        Differentiable w.r.t. the scores (and the weights); parts with q == 0 contribute 0 even at -inf.
        """
        batch, size, _ = self.arc_scores.shape
        check_shape(arc_marginals, "arc_marginals", (batch, size, size))
        total = _safe_weighted_sum(arc_marginals, self.arc_scores, arc_mask(self.lengths, size), (1, 2))
        if sib_marginals is not None and self.sib_scores is not None:
            check_shape(sib_marginals, "sib_marginals", (batch, size, size, size))
            total = total + _safe_weighted_sum(sib_marginals, self.sib_scores, sibling_mask(self.lengths, size),
                                               (1, 2, 3))
        return total
