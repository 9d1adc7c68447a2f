"""Local (per-position) tempering of teacher marginals, as in the reference code.

Each position's distribution over its substructures becomes ``q^(1/T)`` renormalised: the L labels of a
token, the L^2 label pairs of a position, the first label. Globally tempered teachers (marginals of the
model with scores / T) need no tempering here: the objectives ask the teacher for them directly.
"""
from __future__ import annotations

import torch

from .targets import ChainMarginals, TokenMarginals

__all__ = ["temper", "temper_distribution"]


def temper_distribution(p: torch.Tensor, temperature: float, dims) -> torch.Tensor:
    """``p^(1/T)`` renormalised over `dims`; all-zero slices (padding) stay zero."""
    if temperature == 1.0:
        return p
    logp = torch.log(p) / temperature  # zero probabilities stay impossible
    shift = logp.amax(dim=dims, keepdim=True)
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    w = torch.exp(logp - shift)
    total = w.sum(dim=dims, keepdim=True)
    return w / torch.where(total > 0, total, torch.ones_like(total))


def temper(m, temperature: float):
    """Temper TokenMarginals per token, or ChainMarginals per position.

    For a chain, the pair distribution at each position and the first label's distribution are tempered;
    emission weights at later positions and the last label's weight are the marginals of the tempered pairs
    (the reference tempers the last label separately; the two agree at T = 1).
    """
    if temperature == 1.0:
        return m
    if isinstance(m, TokenMarginals):
        return TokenMarginals(temper_distribution(m.probs, temperature, -1), m.lengths, m.labels,
                              m.independent, m.dropped_mass)
    if isinstance(m, ChainMarginals):
        pairwise = temper_distribution(m.pairwise, temperature, (-2, -1))
        first = temper_distribution(m.unary[:, :1], temperature, -1)
        unary = torch.cat([first, pairwise.sum(-2)], dim=1)
        return ChainMarginals(unary, pairwise, m.lengths, m.labels)
    raise TypeError(f"cannot temper {type(m).__name__}")
