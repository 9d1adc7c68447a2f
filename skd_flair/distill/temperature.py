"""Local (per-position) tempering of teacher marginals, as in the reference code.

Each position's distribution over its substructures becomes ``q^(1/T)`` renormalised: the L labels of a
token, the L^2 label pairs of a position, the first label (each target type says which, in its ``temper``).
Globally tempered teachers (marginals of the model with scores / T) need no tempering here: the objectives
ask the teacher for them directly.
"""
from __future__ import annotations

import torch

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
    """Targets tempered per position by their own rule (``Targets.temper``); T = 1 changes nothing."""
    return m if temperature == 1.0 else m.temper(temperature)
