"""First-order dependency trees: exact log-partition, arc marginals and decoding.

Non-projective trees use the Matrix-Tree theorem (Koo et al. 2007 for the single-root variant) through
one LU factorisation in the input's precision, with each dependent's incoming scores shifted by their
maximum (exact: every tree has one head per word). When a Laplacian is too ill-conditioned for that to be
trusted (scores spread by thousands), the tree is recomputed in float64 by a subtraction-free elimination in
log space, which is exact for any finite scores. Teachers pass float64 and get marginals exact to ~1e-12. Decoding is Chu-Liu-Edmonds. Projective trees use Eisner's algorithm.
"""
from __future__ import annotations

from typing import Tuple

import torch

from .base import Structure
from ._checks import StructureInputError, as_lengths, check_scores, check_shape, length_mask, require_trees
from .eisner import eisner_argmax, eisner_log_partition, eisner_log_partition_and_marginals
from ..parsing_runtime import max_spanning_tree

__all__ = ["DependencyTree", "arc_mask"]

_NEG = -1e300  # "impossible" in the log-space fallback: finite, so no 0 * inf in its gradients


def arc_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """[B, N+1, N+1] True for possible arcs h -> d: h in 0..n, d in 1..n, h != d."""
    idx = torch.arange(size, device=lengths.device)
    inside = idx.unsqueeze(0) <= lengths.unsqueeze(1)  # [B, N+1], root counts as inside
    mask = inside.unsqueeze(2) & inside.unsqueeze(1)
    mask[:, :, 0] = False
    return mask & (idx.unsqueeze(1) != idx.unsqueeze(0))


# a column of marginals may miss 1 by this much before the fast path is distrusted
_TRUST = {torch.float64: 1e-10, torch.float32: 1e-4}


def _laplacian_marginals(scores, valid, lengths, single_root):
    """Fast path: (log Z [B], marginals [B, N+1, N+1], trusted [B]) via one LU factorisation.

    With X the inverse of the (Koo et al. 2007) Laplacian, P(h -> d) = w[h, d] (X[d, d] - X[d, h]) and
    P(0 -> d) = w[0, d] X[d, d]; for a single root, whose scores replace the first row, word 1 has no
    diagonal term, arcs from word 1 no off-diagonal term, and P(0 -> d) = w[0, d] X[d, 0].
    """
    batch, size, _ = scores.shape
    n = size - 1
    w = scores.masked_fill(~valid, float("-inf"))
    col = w.amax(1, keepdim=True)
    col = torch.where(torch.isfinite(col), col, torch.zeros_like(col))
    w = w.sub_(col).exp_()  # weights, each dependent's best head scaled to 1 (exact: one head per word)
    words, root = w[:, 1:, 1:], w[:, 0, 1:]
    pad = torch.arange(1, size, device=w.device).unsqueeze(0) > lengths.unsqueeze(1)  # [B, N]
    lap = words.neg()
    diag = words.sum(1) + pad.to(w.dtype)  # padded words get an identity row and column
    lap.diagonal(dim1=1, dim2=2).copy_(diag if single_root else diag + root)
    if single_root:
        lap[:, 0, :] = root
    lu, pivots, info = torch.linalg.lu_factor_ex(lap)
    u = lu.diagonal(dim1=1, dim2=2)
    swaps = (pivots != torch.arange(1, n + 1, device=w.device, dtype=pivots.dtype)).sum(1)
    sign = torch.where(swaps % 2 == 1, -1.0, 1.0).to(w.dtype) * torch.sign(u).prod(1)
    log_z = torch.log(u.abs()).sum(1) + col[:, 0, 1:].masked_fill(pad, 0).sum(1)
    inv = torch.linalg.lu_solve(lu, pivots, torch.eye(n, dtype=w.dtype, device=w.device).expand(batch, n, n))
    inv_diag = inv.diagonal(dim1=1, dim2=2)  # [B, N]: X[d, d]
    factor = torch.sub(inv_diag.unsqueeze(1), inv.transpose(1, 2), out=lap)  # [h, d]: X[d, d] - X[d, h]
    if single_root:
        factor[:, 0, :] = inv_diag
        factor[:, :, 0] = -inv[:, 0, :]
        root_factor = inv[:, :, 0]
    else:
        root_factor = inv_diag
    words.mul_(factor)
    root.mul_(root_factor)
    marg = w  # impossible arcs have weight 0, so they keep marginal 0
    # trust only well-conditioned results: a positive determinant and marginals that are probabilities
    # summing to one per word (and over the root's children for a single root); NaN fails every test
    tol = _TRUST.get(w.dtype, 1e-4)
    col_err = (marg[:, :, 1:].sum(1) - 1).abs().masked_fill(pad, 0).amax(1)
    ok = (info == 0) & (sign > 0) & torch.isfinite(log_z) & (marg.amin((1, 2)) > -tol) & (col_err < tol)
    if single_root:
        ok &= (marg[:, 0].sum(1) - 1).abs() < tol
    return log_z, marg.clamp_(min=0.0), ok


def _logspace_log_partition(scores, valid, lengths, single_root):
    """Exact log Z by eliminating words one at a time in log space.

    Eliminating a word from a Laplacian leaves a Laplacian over the other words whose arc weights gain
    the two-step paths through it; its pivot is a sum of arc weights, so nothing is ever subtracted. For a
    single root, pivots count word-to-word arcs only and the root weights ride along; the last word's root
    weight closes the product (Z is the first-order term of the multi-root polynomial in the root weights).
    Padded words hang from word 1 with weight 1 and are eliminated first, so they change nothing.
    """
    batch, size, _ = scores.shape
    w = scores.clamp(min=_NEG).masked_fill(~valid, _NEG)
    pad = torch.arange(size, device=w.device).unsqueeze(0) > lengths.unsqueeze(1)  # [B, N+1]
    pad_arc = torch.zeros_like(w, dtype=torch.bool)
    pad_arc[:, 1, :] = pad
    w = torch.where(pad_arc, torch.zeros_like(w), w)
    keep_diag = ~torch.eye(size, dtype=torch.bool, device=w.device)
    log_z = w.new_zeros(batch)
    first_head = 1 if single_root else 0
    for k in range(size - 1, first_head, -1):
        pivot = torch.logsumexp(w[:, first_head:k, k], dim=1)
        log_z = log_z + pivot
        through = w[:, :k, k].unsqueeze(2) + w[:, k, 1:k].unsqueeze(1) - pivot.view(-1, 1, 1)
        block = torch.logaddexp(w[:, :k, 1:k], through)
        block = torch.where(keep_diag[:k, 1:k], block, torch.full_like(block, _NEG))  # no self-loops
        w = torch.cat([w[:, :k, :1], block], dim=2)  # the graph without word k
    if single_root:
        log_z = log_z + w[:, 0, 1]
    return log_z


def _logspace_marginals(scores, valid, lengths, single_root):
    with torch.enable_grad():
        leaf = scores.detach().requires_grad_(True)
        log_z = _logspace_log_partition(leaf, valid, lengths, single_root)
        (grad,) = torch.autograd.grad(log_z.sum(), leaf)
    return log_z.detach(), grad.masked_fill(~valid, 0.0)


def _nonprojective(scores, valid, lengths, single_root):
    """(log Z, marginals) by the Laplacian, redoing the untrusted batch items in log space (float64)."""
    log_z, marg, ok = _laplacian_marginals(scores, valid, lengths, single_root)
    if not bool(ok.all()):
        bad = (~ok).nonzero().squeeze(1)
        z_bad, m_bad = _logspace_marginals(scores[bad].double(), valid[bad], lengths[bad], single_root)
        log_z[bad], marg[bad] = z_bad.to(log_z.dtype), m_bad.to(marg.dtype)
    return log_z, marg


def heads_indicator(heads: torch.Tensor, lengths: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, N+1, N+1]`` 0/1 arcs ``[b, heads[b, d], d]`` of the words d = 1..length of trees given as heads."""
    batch, size = heads.shape
    words = length_mask(lengths + 1, size)
    words[:, 0] = False
    out = torch.zeros(batch, size, size, dtype=dtype, device=heads.device)
    b, d = words.nonzero(as_tuple=True)
    out[b, heads[b, d], d] = 1.0
    return out


class _TreeLogPartition(torch.autograd.Function):
    """log Z whose gradient is the arc marginals computed alongside it."""

    @staticmethod
    def forward(ctx, scores, valid, lengths, single_root, projective):
        log_z, marg = _tree_inference(scores, valid, lengths, single_root, projective)
        ctx.save_for_backward(marg)
        return log_z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (marg,) = ctx.saved_tensors
        return marg * grad.view(-1, 1, 1), None, None, None, None


def _tree_inference(scores, valid, lengths, single_root, projective):
    if projective:
        return eisner_log_partition_and_marginals(scores, lengths, single_root)
    return _nonprojective(scores, valid, lengths, single_root)


class DependencyTree(Structure):
    """A batch of distributions over dependency trees, arc-factored.

    Args:
        arc_scores: ``[B, N+1, N+1]``, ``[b, h, d]`` = score of the arc head h -> dependent d; index 0 is the
            root, words are 1..n. Entries that are not possible arcs are ignored.
        lengths: ``[B]`` number of words (default N).
        projective: Eisner (projective) instead of the Matrix-Tree theorem / Chu-Liu-Edmonds.
        single_root: exactly one word attaches to the root.

    Half-precision scores are computed in float32 and every result is float32 (float64 for float64 scores),
    as for chains and spans. A sentence whose every tree uses an arc scored ``-inf`` (below ``-1e29`` counts
    as ``-inf``) has no distribution: ``log_partition``, ``marginals`` and ``argmax`` raise
    ``StructureInputError`` naming it, rather than return a tree through an impossible arc.
    """

    def __init__(self, arc_scores: torch.Tensor, lengths=None, projective: bool = False, single_root: bool = True):
        check_scores(arc_scores, "arc_scores", 3)
        batch, size, size2 = arc_scores.shape
        if batch == 0 or size < 2:
            raise StructureInputError(f"arc_scores must be [B, N+1, N+1] with B >= 1, N >= 1; got {list(arc_scores.shape)}")
        check_shape(arc_scores, "arc_scores", (batch, size, size))
        self.lengths = as_lengths(lengths, batch, size - 1, arc_scores.device)
        self.arc_scores = arc_scores
        self.projective, self.single_root = projective, single_root
        self.valid = arc_mask(self.lengths, size)
        self._cache = {}

    def _work_scores(self):
        scores = self.arc_scores
        return scores if scores.dtype in (torch.float32, torch.float64) else scores.float()

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of every result: float64 for float64 scores, else float32."""
        return torch.float64 if self.arc_scores.dtype == torch.float64 else torch.float32

    @property
    def log_partition(self) -> torch.Tensor:
        """``[B]`` log Z, differentiable w.r.t. the arc scores."""
        scores = self._work_scores()
        if torch.is_grad_enabled() and self.arc_scores.requires_grad:
            if self.projective:
                log_z = eisner_log_partition(scores, self.lengths, self.single_root)
            else:
                log_z = _TreeLogPartition.apply(scores, self.valid, self.lengths, self.single_root, False)
            require_trees(log_z.detach(), "log partition")
            return log_z.to(self.dtype)
        return self._inference()[0]

    def _inference(self):
        if "inference" not in self._cache:
            with torch.no_grad():
                log_z, marg = _tree_inference(self._work_scores(), self.valid, self.lengths, self.single_root,
                                              self.projective)
            require_trees(log_z, "distribution over trees")
            self._cache["inference"] = (log_z.to(self.dtype), marg.to(self.dtype))
        return self._cache["inference"]

    @property
    def marginals(self) -> torch.Tensor:
        """``[B, N+1, N+1]`` with ``[b, h, d] = P(head(d) = h)``; no autograd graph."""
        return self._inference()[1]

    @property
    def argmax(self) -> torch.Tensor:
        """``[B, N+1]`` heads of the best tree (``heads[b, d]`` for d = 1..n; -1 at 0 and on padding)."""
        if "argmax" not in self._cache:
            if self.projective:
                heads = eisner_argmax(self._work_scores().detach(), self.lengths, self.single_root)
            else:
                heads = self._mst()
            with torch.no_grad():
                require_trees(self.score(heads).to(torch.float64), "best tree")
            self._cache["argmax"] = heads
        return self._cache["argmax"]

    def _mst(self) -> torch.Tensor:
        scores = self.arc_scores.detach().double().cpu()
        valid = self.valid.cpu()
        size = scores.shape[1]
        out = torch.full((scores.shape[0], size), -1, dtype=torch.long)
        for b, n in enumerate(self.lengths.tolist()):
            s = scores[b, :n + 1, :n + 1].masked_fill(~valid[b, :n + 1, :n + 1], float("-inf"))
            finite = torch.isfinite(s)
            if not finite[:, 1:].any(0).all():
                raise StructureInputError(f"batch item {b}: some word has no possible head (all -inf)")
            # -inf arcs the user gave for possible arcs stay last resorts, but finite for the decoder
            lo = s[finite].min()
            s = torch.where(valid[b, :n + 1, :n + 1] & ~finite, lo - 1.0 - (s[finite].max() - lo), s)
            out[b, :n + 1] = torch.from_numpy(max_spanning_tree(s.numpy(), self.single_root))
        out[:, 0] = -1
        return out.to(self.arc_scores.device)

    # ------------------------------------------------------------------ the Structure convention
    @property
    def part_marginals(self) -> Tuple[torch.Tensor]:
        """(arcs ``[B, N+1, N+1]``,)."""
        return (self.marginals,)

    def decode(self) -> torch.Tensor:
        return self.argmax

    def indicators(self, heads: torch.Tensor) -> Tuple[torch.Tensor]:
        return (heads_indicator(heads, self.lengths, self.dtype),)

    # ------------------------------------------------------------------ scoring
    def score(self, heads: torch.Tensor) -> torch.Tensor:
        """``[B]`` score of given trees (heads ``[B, N+1]``, entries past the length ignored)."""
        check_shape(heads, "heads", self.lengths.shape + self.arc_scores.shape[1:2])
        size = self.arc_scores.shape[1]
        words = (torch.arange(size, device=heads.device).unsqueeze(0) <= self.lengths.unsqueeze(1))
        words[:, 0] = False
        h = heads.clamp(min=0)
        if bool(((heads < 0) | (heads >= size)).masked_select(words).any()):
            raise StructureInputError("heads must be in 0..N for every word")
        picked = self.arc_scores.gather(1, h.unsqueeze(1)).squeeze(1)  # [b, d] = s[b, heads[d], d]
        return torch.where(words, picked, picked.new_zeros(())).sum(1)

    def log_prob(self, heads: torch.Tensor) -> torch.Tensor:
        return self.score(heads) - self.log_partition

    def expected_score(self, arc_marginals: torch.Tensor) -> torch.Tensor:
        """``[B]`` ``sum_{h,d} q(h, d) s(h, d)`` over possible arcs."""
        check_shape(arc_marginals, "arc_marginals", self.arc_scores.shape)
        q = torch.where(self.valid, arc_marginals.to(self.arc_scores.dtype), arc_marginals.new_zeros(()))
        prod = q * self.arc_scores
        prod = torch.where(q == 0, prod.new_zeros(()), prod)
        return prod.sum((1, 2))
