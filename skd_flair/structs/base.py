"""What every structure in this package is: a batch of distributions ``P(y) = exp(score(y)) / Z`` over the
structures y of each item, where ``score(y)`` is the sum of the scores of y's parts.

One convention for all of them (tested over every structure by one enumeration harness,
``tests/test_structures.py``):

- ``log_partition``: ``[B]`` log Z, differentiable in the scores.
- ``part_marginals``: a tuple of tensors, ``P(part in y)``, one per kind of part, in the layout of the scores
  the structure was built from (chain: labels, label pairs; spans: spans; semi-Markov: segments, boundary label
  pairs; trees: arcs; sibling trees: arcs, sibling triples).
- ``expected_score(*weights)``: ``[B]`` ``sum over parts of weight * score``, weights in `part_marginals`'
  layout, differentiable in the scores; a part with weight 0 contributes 0 even where its score is -inf.
- ``decode()``: the best structure of each item in the structure's index form (chain: tags ``[B, N]``; trees:
  heads ``[B, N+1]``; spans and segments: a list per item of ``(start, end inclusive, label)``).
- ``indicators(structures)``: the one-hot parts of structures given in that index form, in `part_marginals`'
  layout; ``score(structures) = expected_score(*indicators(structures))``.
- dtype: float64 scores give float64 results, anything else float32 (each structure says where it computes
  in float64 internally).
"""
from __future__ import annotations

from typing import Tuple

import torch

__all__ = ["Structure", "weighted_sum"]


def weighted_sum(q: torch.Tensor, s: torch.Tensor, dims) -> torch.Tensor:
    """``sum(q * s)`` over `dims`, where q == 0 contributes 0 even if s is -inf (and no NaN reaches a gradient)."""
    return (q * torch.where(q == 0, torch.zeros((), dtype=s.dtype, device=s.device), s)).sum(dims)


class Structure:
    """Base class of the structures (see the module for the convention each method follows)."""

    @property
    def log_partition(self) -> torch.Tensor:
        raise NotImplementedError

    @property
    def part_marginals(self) -> Tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def expected_score(self, *weights: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self):
        raise NotImplementedError

    def indicators(self, structures) -> Tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def score(self, structures) -> torch.Tensor:
        return self.expected_score(*self.indicators(structures))

    def log_prob(self, structures) -> torch.Tensor:
        return self.score(structures) - self.log_partition

    @property
    def best_parts(self) -> Tuple[torch.Tensor, ...]:
        """The best structure's parts, one-hot, in `part_marginals`' layout."""
        return self.indicators(self.decode())
