"""Mean-field variational inference (MFVI) for second-order (sibling) dependency scores.

The reference code's second-order parser (Wang & Tu 2020) approximates the arc marginals by mean field
over the head-selection variables ``head(d)``: every word keeps a distribution ``Q_d(h)`` over its heads,
and a few updates

    Q <- softmax over heads of ( s(h -> d) + sum_s Q_s(h) * pair(h, s, d) )

pass the expected sibling scores between words that share a head. Sibling factors are the reference's
*all pairs* factorisation: every two dependents s, d on the same side of h interact, scored
``sib[h, inner, outer]`` (the one nearer to h first), and the first-dependent score ``sib[h, h, d]`` acts as
an arc score. Neither the tree constraint nor sibling adjacency is enforced: ``Q`` is an approximation, and
(unlike ``SiblingTree``) this also works for non-projective parsing.

Scores use the layout of ``SiblingTree``: ``arc_scores[b, h, d]``, ``sib_scores[b, h, s, d]``, 0 = root.
Everything is differentiable (the updates are unrolled), so a parser can be trained through ``Q``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ._checks import StructureInputError, as_lengths, check_scores, check_shape
from .dependency import arc_mask

__all__ = ["mean_field_arc_marginals", "mean_field_logits", "sibling_pair_scores"]

_MASKED = -1e9  # finite "impossible" logit: exp underflows to 0 and no NaN reaches a gradient


def _same_side_masks(size: int, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """``[S, S, S]`` (h, s, d): s strictly between h and d; d strictly between h and s."""
    idx = torch.arange(size, device=device)
    h, s, d = idx.view(-1, 1, 1), idx.view(1, -1, 1), idx.view(1, 1, -1)
    s_inner = ((h < s) & (s < d)) | ((d < s) & (s < h))
    d_inner = ((h < d) & (d < s)) | ((s < d) & (d < h))
    return s_inner, d_inner


def sibling_pair_scores(sib_scores: torch.Tensor) -> torch.Tensor:
    """``[B, S, S, S]`` ``pair[b, h, s, d]``: the score shared by dependents s and d of h on the same side
    (``sib[h, s, d]`` when s is nearer to h, ``sib[h, d, s]`` when d is), zero for any other (h, s, d)."""
    s_inner, d_inner = _same_side_masks(sib_scores.shape[1], sib_scores.device)
    zero = sib_scores.new_zeros(())
    return torch.where(s_inner, sib_scores, torch.where(d_inner, sib_scores.transpose(2, 3), zero))


def _masked_softmax(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    q = torch.softmax(logits.masked_fill(~valid, _MASKED), dim=1)
    return q * valid.to(q.dtype)  # the root column and padding have no head


def mean_field_logits(arc_scores: torch.Tensor, sib_scores: Optional[torch.Tensor], lengths=None,
                      iterations: int = 3) -> torch.Tensor:
    """``[B, S, S]`` the mean-field head logits ``q[b, h, d]`` after `iterations` updates (impossible arcs
    hold a large negative value); ``softmax(q, dim=1)`` over possible heads is ``Q``. Differentiable."""
    check_scores(arc_scores, "arc_scores", 3)
    batch, size, _ = arc_scores.shape
    check_shape(arc_scores, "arc_scores", (batch, size, size))
    if iterations < 0:
        raise StructureInputError(f"iterations must be >= 0, got {iterations}")
    lengths = as_lengths(lengths, batch, size - 1, arc_scores.device)
    valid = arc_mask(lengths, size)
    unary = arc_scores
    pair = None
    if sib_scores is not None:
        check_scores(sib_scores, "sib_scores", 4)
        check_shape(sib_scores, "sib_scores", (batch, size, size, size))
        sib = sib_scores.to(arc_scores.dtype).clamp(min=_MASKED)
        unary = arc_scores + sib.diagonal(dim1=1, dim2=2).transpose(1, 2)  # [b, h, d] = sib[b, h, h, d]
        pair = sibling_pair_scores(sib)
    unary = unary.clamp(min=_MASKED).masked_fill(~valid, _MASKED)
    logits = unary
    if pair is None:
        return logits
    for _ in range(iterations):
        q = _masked_softmax(logits, valid)
        logits = (unary + torch.einsum("bhs,bhsd->bhd", q, pair)).masked_fill(~valid, _MASKED)
    return logits


def mean_field_arc_marginals(arc_scores: torch.Tensor, sib_scores: Optional[torch.Tensor], lengths=None,
                             iterations: int = 3) -> torch.Tensor:
    """``[B, S, S]`` approximate arc marginals ``Q[b, h, d] ~ P(head(d) = h)``: each word's column sums to
    one over its possible heads; zero on impossible arcs. Differentiable (see `mean_field_logits`)."""
    lengths = as_lengths(lengths, arc_scores.shape[0], arc_scores.shape[1] - 1, arc_scores.device)
    logits = mean_field_logits(arc_scores, sib_scores, lengths, iterations)
    return _masked_softmax(logits, arc_mask(lengths, arc_scores.shape[1]))
