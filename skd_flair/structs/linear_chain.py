"""Linear-chain CRF: exact log-partition, unary and pairwise marginals, Viterbi and k-best decoding.

Layout: ``transitions[i, j]`` scores label ``i`` at position t-1 followed by label ``j`` at t, so
``score(y) = start[y_0] + sum_t emissions[t, y_t] + sum_{t>=1} transitions[y_{t-1}, y_t] + end[y_{n-1}]``.

The forward and backward recursions run as one small matrix product per step in exp space, shifted by
the running maximum and by each column's largest transition. That is exact as long as no partial sum
underflows; every step's smallest partial sum is tracked and, if any fell below a safe floor, the
recursion is redone in plain log space (logsumexp), which is slower but cannot underflow. Marginals
come from an explicit forward-backward pass, so they need no autograd graph; the log-partition is a
custom autograd function whose backward pass is that same forward-backward.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .base import Structure, weighted_sum
from ._checks import StructureInputError, as_lengths, check_scores, check_shape, length_mask

__all__ = ["LinearChainCRF"]


def _floor(dtype: torch.dtype) -> float:
    # A partial sum above this is exact to rounding: the largest term is >= floor / L, far above the
    # smallest normal number, so the terms lost to underflow are negligible relative to it.
    return torch.finfo(dtype).tiny ** 0.8


def _forward_logspace(em: torch.Tensor, trans: torch.Tensor, first: torch.Tensor):
    a = first + em[:, 0]
    out, pre = [a], [first.expand_as(a)]
    for t in range(1, em.shape[1]):
        p = torch.logsumexp(a.unsqueeze(-1) + trans, dim=1)
        a = p + em[:, t]
        out.append(a)
        pre.append(p)
    return torch.stack(out, 1), torch.stack(pre, 1)


def _forward(em: torch.Tensor, trans: torch.Tensor, first: torch.Tensor, with_pre: bool = False):
    """alpha[b, t, j] = log sum over prefixes ending in label j at t (emission at t included); with
    ``with_pre`` also the same sums before the emission at t is added (``first`` at t = 0), which the backward
    pass needs: recovering them as ``alpha - emission`` would give NaN where an emission is -inf."""
    n = em.shape[1]
    a = first + em[:, 0]
    if n == 1:
        return (a.unsqueeze(1), first.expand_as(a).unsqueeze(1)) if with_pre else a.unsqueeze(1)
    col = trans.amax(0)
    dead = ~torch.isfinite(col)  # labels nothing can transition into
    col = torch.where(dead, torch.zeros_like(col), col)
    exp_trans = torch.exp(trans - col)
    out, pre = [a], [first.expand_as(a)]
    worst = None
    for t in range(1, n):
        shift = a.amax(-1, keepdim=True)
        r = torch.mm(torch.exp(a - shift), exp_trans)
        low = (r + dead).amin() if dead.any() else r.amin()
        worst = low if worst is None else torch.minimum(worst, low)
        p = torch.log(r) + (shift + col)
        a = p + em[:, t]
        out.append(a)
        pre.append(p)
    if not bool(worst >= _floor(em.dtype)):  # also catches NaN from a fully impossible prefix
        alpha, before = _forward_logspace(em, trans, first)
    else:
        alpha, before = torch.stack(out, 1), torch.stack(pre, 1)
    return (alpha, before) if with_pre else alpha


def _reverse_index(lengths: torch.Tensor, n: int) -> torch.Tensor:
    """Per-row index that reverses the first `length` positions and leaves padding in place."""
    t = torch.arange(n, device=lengths.device).unsqueeze(0)
    return torch.where(t < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - t, t)


def _gather_positions(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


def _backward(em, trans, end, lengths) -> torch.Tensor:
    """beta[b, t, i] = log sum over suffixes after label i at t (emission at t excluded, end included).

    Reversing each sentence turns the backward recursion into the forward one over transposed
    transitions, so both share the fast path.
    """
    rev = _reverse_index(lengths, em.shape[1])
    _, before_rev = _forward(_gather_positions(em, rev), trans.t(), end, with_pre=True)
    return _gather_positions(before_rev, rev)


def _last(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return x.gather(1, (lengths - 1).view(-1, 1, 1).expand(-1, 1, x.shape[-1])).squeeze(1)


def _log_partition_from_alpha(alpha, end, lengths):
    return torch.logsumexp(_last(alpha, lengths) + end, dim=-1)


# Marginals are normalised per position (sum_j alpha_t(j) beta_t(j) = Z at every t) rather than by the global
# log Z: the same numbers in exact arithmetic, but alpha + beta - log Z cancels terms of the size of the whole
# sentence's score, which float32 keeps only to ~7 digits (at scores of 1e4 rows summed to 1.008, at 1e6 to
# 7.4). A position with no possible label at all (no valid sequence) gets zeros, not NaN.
def _normalised(scores: torch.Tensor, dims: int, keep: torch.Tensor, log: bool = False) -> torch.Tensor:
    flat = scores.flatten(2) if dims == 2 else scores
    top = flat.detach().amax(-1, keepdim=True)
    possible = torch.isfinite(top)
    ok = possible & keep.unsqueeze(-1)
    shifted = flat - torch.where(ok, top, torch.zeros_like(top))
    norm = torch.logsumexp(shifted, -1, keepdim=True)
    out = shifted - torch.where(ok, norm, torch.zeros_like(norm))
    if log:  # 0 on padding, -inf where nothing is possible
        out = out.masked_fill(~keep.unsqueeze(-1), 0.0).masked_fill(keep.unsqueeze(-1) & ~possible, float("-inf"))
    else:
        out = out.exp().masked_fill(~ok, 0.0)
    return out.reshape(scores.shape)


def _unary(alpha, beta, mask, log: bool = False):
    return _normalised(alpha + beta, 1, mask, log)


def _pairwise(alpha, beta, em, trans, mask):
    right = em[:, 1:] + beta[:, 1:]
    return _normalised(alpha[:, :-1].unsqueeze(-1) + right.unsqueeze(2) + trans, 2, mask[:, 1:])


class _ChainLogPartition(torch.autograd.Function):
    """log Z with a backward pass that is the forward-backward algorithm, not a taped recursion."""

    @staticmethod
    def forward(ctx, em, trans, start, end, lengths):
        alpha = _forward(em, trans, start)
        log_z = _log_partition_from_alpha(alpha, end, lengths)
        ctx.save_for_backward(em, trans, end, lengths, alpha, log_z)
        return log_z

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        em, trans, end, lengths, alpha, log_z = ctx.saved_tensors
        beta = _backward(em, trans, end, lengths)
        mask = length_mask(lengths, em.shape[1])
        unary = _unary(alpha, beta, mask)
        g_em = unary * grad.view(-1, 1, 1)
        g_trans = None
        if ctx.needs_input_grad[1]:
            g_trans = torch.einsum("btij,b->ij", _pairwise(alpha, beta, em, trans, mask), grad)
        g_start = (unary[:, 0] * grad.unsqueeze(-1)).sum(0) if ctx.needs_input_grad[2] else None
        g_end = (_last(unary, lengths) * grad.unsqueeze(-1)).sum(0) if ctx.needs_input_grad[3] else None
        return g_em, g_trans, g_start, g_end, None


class LinearChainCRF(Structure):
    """A batch of linear-chain CRF distributions over label sequences.

    Args:
        emissions: ``[B, N, L]`` per-position label scores; positions ``>= lengths[b]`` are padding.
        transitions: ``[L, L]``, ``transitions[i, j]`` = score of label i followed by label j.
        lengths: ``[B]`` sequence lengths in ``1..N`` (default: all N).
        start, end: optional ``[L]`` scores of the first and the last label.

    Scores may hold ``-inf`` for impossible labels or transitions, never NaN or ``+inf``.
    Half-precision inputs are computed in float32.
    """

    def __init__(self, emissions: torch.Tensor, transitions: torch.Tensor, lengths=None,
                 start: Optional[torch.Tensor] = None, end: Optional[torch.Tensor] = None):
        check_scores(emissions, "emissions", 3)
        batch, n, num_labels = emissions.shape
        if batch == 0 or n == 0 or num_labels == 0:
            raise StructureInputError(f"emissions must be non-empty [B, N, L], got {list(emissions.shape)}")
        check_scores(transitions, "transitions", 2)
        check_shape(transitions, "transitions", (num_labels, num_labels))
        for name, x in (("start", start), ("end", end)):
            if x is not None:
                check_scores(x, name, 1)
                check_shape(x, name, (num_labels,))
        self.lengths = as_lengths(lengths, batch, n, emissions.device)
        self.mask = length_mask(self.lengths, n)
        dtype = emissions.dtype if emissions.dtype in (torch.float32, torch.float64) else torch.float32
        zeros = emissions.new_zeros(num_labels, dtype=dtype)
        # padding is zeroed so that recursions run through it harmlessly
        self.emissions = emissions.to(dtype).masked_fill(~self.mask.unsqueeze(-1), 0.0)
        self.transitions = transitions.to(dtype)
        self.start = zeros if start is None else start.to(dtype)
        self.end = zeros if end is None else end.to(dtype)
        self.batch_size, self.max_len, self.num_labels = batch, n, num_labels
        self._cache = {}

    # ------------------------------------------------------------------ the Structure convention
    @property
    def part_marginals(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(labels ``[B, N, L]``, label pairs ``[B, N-1, L, L]``)."""
        return self.marginals, self.pairwise_marginals

    def decode(self) -> torch.Tensor:
        """``[B, N]`` the best tags (-1 on padding)."""
        return self.argmax

    def indicators(self, tags: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        check_shape(tags, "tags", (self.batch_size, self.max_len))
        unary = torch.nn.functional.one_hot(tags.clamp(min=0), self.num_labels).to(self.emissions.dtype)
        unary = unary * self.mask.unsqueeze(-1)
        return unary, unary[:, :-1].unsqueeze(-1) * unary[:, 1:].unsqueeze(-2)

    # ------------------------------------------------------------------ inference
    def _needs_graph(self) -> bool:
        return torch.is_grad_enabled() and any(
            x.requires_grad for x in (self.emissions, self.transitions, self.start, self.end))

    def _alpha(self):
        if "alpha" not in self._cache:
            self._cache["alpha"] = _forward(self.emissions, self.transitions, self.start)
        return self._cache["alpha"]

    @property
    def log_partition(self) -> torch.Tensor:
        """``[B]`` log Z, differentiable in every score."""
        if self._needs_graph():
            return _ChainLogPartition.apply(self.emissions, self.transitions, self.start, self.end, self.lengths)
        return _log_partition_from_alpha(self._alpha(), self.end, self.lengths)

    def _forward_backward(self):
        if "beta" not in self._cache:
            alpha = self._alpha()
            self._cache["beta"] = _backward(self.emissions, self.transitions, self.end, self.lengths)
            self._cache["log_z"] = _log_partition_from_alpha(alpha, self.end, self.lengths)
        return self._alpha(), self._cache["beta"], self._cache["log_z"]

    @property
    def marginals(self) -> torch.Tensor:
        """``[B, N, L]`` P(y_t = j); zero on padding. Differentiable when the scores require grad."""
        if "unary" not in self._cache:
            alpha, beta, _ = self._forward_backward()
            self._cache["unary"] = _unary(alpha, beta, self.mask)
        return self._cache["unary"]

    @property
    def log_marginals(self) -> torch.Tensor:
        """``[B, N, L]`` log P(y_t = j) (0 on padding, -inf for impossible labels), differentiable; stays
        finite where exp would underflow, so cross-entropies against it never see log 0 by rounding."""
        alpha, beta, _ = self._forward_backward()
        return _unary(alpha, beta, self.mask, log=True)

    @property
    def pairwise_marginals(self) -> torch.Tensor:
        """``[B, N-1, L, L]`` with ``[b, t, i, j] = P(y_t = i, y_{t+1} = j)``; zero past length - 1."""
        if "pairwise" not in self._cache:
            alpha, beta, _ = self._forward_backward()
            self._cache["pairwise"] = _pairwise(alpha, beta, self.emissions, self.transitions, self.mask)
        return self._cache["pairwise"]

    # ------------------------------------------------------------------ scoring
    def score(self, tags: torch.Tensor) -> torch.Tensor:
        """Scores of given sequences: ``tags`` ``[B, N]`` or ``[B, K, N]`` -> ``[B]`` or ``[B, K]``."""
        squeeze = tags.dim() == 2
        if squeeze:
            tags = tags.unsqueeze(1)
        if tags.dim() != 3 or tags.shape[0] != self.batch_size or tags.shape[2] != self.max_len:
            raise StructureInputError(f"tags must be [B, N] or [B, K, N] with B={self.batch_size}, "
                                      f"N={self.max_len}; got {list(tags.shape)}")
        mask = self.mask.unsqueeze(1)
        valid = tags.clamp(min=0)
        bad = (tags < 0) | (tags >= self.num_labels)
        if bool((bad & mask).any()):
            raise StructureInputError(f"tags must be in 0..{self.num_labels - 1} at every position < length")
        k = tags.shape[1]
        em = self.emissions.unsqueeze(1).expand(-1, k, -1, -1).gather(3, valid.unsqueeze(-1)).squeeze(-1)
        total = torch.where(mask, em, em.new_zeros(())).sum(-1)
        trans = self.transitions[valid[..., :-1], valid[..., 1:]]
        total = total + torch.where(mask[..., 1:], trans, trans.new_zeros(())).sum(-1)
        last = valid.gather(2, (self.lengths - 1).view(-1, 1, 1).expand(-1, k, 1)).squeeze(-1)
        total = total + self.start[valid[..., 0]] + self.end[last]
        return total.squeeze(1) if squeeze else total

    def log_prob(self, tags: torch.Tensor) -> torch.Tensor:
        log_z = self.log_partition
        return self.score(tags) - (log_z if tags.dim() == 2 else log_z.unsqueeze(-1))

    def expected_score(self, unary: torch.Tensor, pairwise: torch.Tensor) -> torch.Tensor:
        """``[B]`` ``sum_u q(u) s(u)`` for unary ``[B, N, L]`` and pairwise ``[B, N-1, L, L]`` weights q.

        Emissions are weighted by ``unary``, transitions by ``pairwise``, the start score by the first
        unary and the end score by the last unary (at ``lengths - 1``). Weights on padding are ignored.
        """
        check_shape(unary, "unary", (self.batch_size, self.max_len, self.num_labels))
        check_shape(pairwise, "pairwise", (self.batch_size, self.max_len - 1, self.num_labels, self.num_labels))
        unary = torch.where(self.mask.unsqueeze(-1), unary.to(self.emissions.dtype), unary.new_zeros(()))
        pairwise = torch.where(self.mask[:, 1:].view(self.batch_size, -1, 1, 1),
                               pairwise.to(self.emissions.dtype), pairwise.new_zeros(()))
        total = weighted_sum(unary, self.emissions, (1, 2))
        total = total + weighted_sum(pairwise.sum(1), self.transitions, (1, 2))
        total = total + weighted_sum(unary[:, 0], self.start, 1)
        total = total + weighted_sum(_last(unary, self.lengths), self.end, 1)
        return total

    # ------------------------------------------------------------------ decoding
    @property
    def argmax(self) -> torch.Tensor:
        """``[B, N]`` Viterbi sequences, -1 on padding."""
        tags, _ = self._viterbi(1)
        return tags[:, 0]

    def topk(self, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The k best sequences: tags ``[B, k, N]`` (-1 on padding) and scores ``[B, k]``, best first.

        Where fewer than k sequences exist, the missing ranks have score -inf and tags -1.
        """
        if k < 1:
            raise StructureInputError(f"k must be >= 1, got {k}")
        return self._viterbi(k)

    @torch.no_grad()
    def _viterbi(self, k: int):
        em, trans, lengths = self.emissions, self.transitions, self.lengths
        batch, n, num_labels = em.shape
        neg_inf = torch.tensor(float("-inf"), dtype=em.dtype, device=em.device)
        # score[b, j, r] = r-th best prefix score ending in label j
        score = torch.full((batch, num_labels, k), float("-inf"), dtype=em.dtype, device=em.device)
        score[:, :, 0] = self.start + em[:, 0]
        pointers = []
        for t in range(1, n):
            cand = (score.unsqueeze(-1) + trans.view(num_labels, 1, num_labels)).reshape(batch, num_labels * k,
                                                                                         num_labels)
            best, ptr = cand.topk(k, dim=1)  # [B, k, L]
            new = best.transpose(1, 2) + em[:, t].unsqueeze(-1)
            active = (t < lengths).view(-1, 1, 1)
            score = torch.where(active, new, score)
            pointers.append(ptr.transpose(1, 2))  # [B, L, k], index into (label * k + rank) at t-1
        final = (score + self.end.view(1, -1, 1)).reshape(batch, num_labels * k)
        top_scores, top = final.topk(k, dim=1)  # flat index label * k + rank at the last position
        label, rank = top // k, top % k
        tags = torch.full((batch, k, n), -1, dtype=torch.long, device=em.device)
        for t in range(n - 1, -1, -1):
            active = (t < lengths).view(-1, 1)
            tags[:, :, t] = torch.where(active, label, tags[:, :, t])
            if t == 0:
                break
            flat = pointers[t - 1].reshape(batch, num_labels * k).gather(1, label * k + rank)
            label = torch.where(active, flat // k, label)
            rank = torch.where(active, flat % k, rank)
        missing = top_scores == neg_inf
        tags = tags.masked_fill(missing.unsqueeze(-1), -1)
        return tags, top_scores
