"""Teacher marginals over a student's substructures: what the KD losses consume and the cache stores."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional, Sequence

import torch

from ..structs._checks import StructureInputError, as_lengths, length_mask

__all__ = ["TokenMarginals", "ChainMarginals", "SequenceTargets", "ArcMarginals"]


def _check_labels(labels: Optional[Sequence[str]], size: int, what: str) -> Optional[List[str]]:
    if labels is None:
        return None
    labels = list(labels)
    if len(labels) != size:
        raise StructureInputError(f"{what}: {len(labels)} label names for {size} label columns")
    if len(set(labels)) != len(labels):
        raise StructureInputError(f"{what}: duplicate label names")
    return labels


@dataclass
class TokenMarginals:
    """``probs[b, t, j]``: probability that token t takes label j (zero on padding).

    The student substructure of every locally normalised student (cases 1b, 2a, 2b, 4) and of posterior
    and token-level KD.
    """

    probs: torch.Tensor
    lengths: torch.Tensor
    labels: Optional[List[str]] = None
    # True when the tokens are independent under the teacher (a MaxEnt teacher): only then is the
    # outer product of neighbours the teacher's pairwise marginal
    independent: bool = False
    # teacher mass per token that no student label could take (diagnostics of a lossy map)
    dropped_mass: Optional[torch.Tensor] = None

    def __post_init__(self):
        if self.probs.dim() != 3:
            raise StructureInputError(f"probs must be [B, N, L], got {list(self.probs.shape)}")
        batch, n, size = self.probs.shape
        self.lengths = as_lengths(self.lengths, batch, n, self.probs.device)
        self.labels = _check_labels(self.labels, size, "TokenMarginals")

    @property
    def mask(self) -> torch.Tensor:
        return length_mask(self.lengths, self.probs.shape[1])

    def to(self, device=None, dtype=None) -> "TokenMarginals":
        return replace(self, probs=self.probs.to(device=device, dtype=dtype), lengths=self.lengths.to(device=device))


@dataclass
class ChainMarginals:
    """Marginals of a linear-chain student's substructures (cases 1a and 3).

    ``unary[b, t, j] = P(y_t = j)`` weights the emissions (and, at the first and last position, the start
    and end scores); ``pairwise[b, t, i, j] = P(y_t = i, y_{t+1} = j)`` weights the transitions.
    """

    unary: torch.Tensor
    pairwise: torch.Tensor
    lengths: torch.Tensor
    labels: Optional[List[str]] = None

    def __post_init__(self):
        if self.unary.dim() != 3:
            raise StructureInputError(f"unary must be [B, N, L], got {list(self.unary.shape)}")
        batch, n, size = self.unary.shape
        if list(self.pairwise.shape) != [batch, max(n - 1, 0), size, size]:
            raise StructureInputError(f"pairwise must be [{batch}, {n - 1}, {size}, {size}], "
                                      f"got {list(self.pairwise.shape)}")
        self.lengths = as_lengths(self.lengths, batch, n, self.unary.device)
        self.labels = _check_labels(self.labels, size, "ChainMarginals")

    @property
    def mask(self) -> torch.Tensor:
        return length_mask(self.lengths, self.unary.shape[1])

    def to(self, device=None, dtype=None) -> "ChainMarginals":
        return replace(self, unary=self.unary.to(device=device, dtype=dtype),
                       pairwise=self.pairwise.to(device=device, dtype=dtype), lengths=self.lengths.to(device=device))


@dataclass
class SequenceTargets:
    """Whole label sequences with weights (Top-K KD): ``tags [B, K, N]`` (-1 on padding or missing ranks),
    ``weights [B, K]`` summing to one over the ranks that exist."""

    tags: torch.Tensor
    weights: torch.Tensor
    lengths: torch.Tensor
    labels: Optional[List[str]] = None

    def __post_init__(self):
        if self.tags.dim() != 3 or list(self.weights.shape) != list(self.tags.shape[:2]):
            raise StructureInputError(f"tags must be [B, K, N] and weights [B, K]; got {list(self.tags.shape)}"
                                      f" and {list(self.weights.shape)}")
        self.lengths = as_lengths(self.lengths, self.tags.shape[0], self.tags.shape[2], self.tags.device)


@dataclass
class ArcMarginals:
    """A dependency teacher's marginals: ``arcs[b, h, d] = P(head(d) = h)`` (index 0 = root) and, when it
    labels arcs, ``relations[b, h, d, r] = P(rel(d) = r | head(d) = h)`` with names `relation_names`."""

    arcs: torch.Tensor
    lengths: torch.Tensor
    relations: Optional[torch.Tensor] = None
    relation_names: Optional[List[str]] = None

    def __post_init__(self):
        if self.arcs.dim() != 3 or self.arcs.shape[1] != self.arcs.shape[2]:
            raise StructureInputError(f"arcs must be [B, N+1, N+1], got {list(self.arcs.shape)}")
        batch, size, _ = self.arcs.shape
        self.lengths = as_lengths(self.lengths, batch, size - 1, self.arcs.device)
        if self.relations is not None:
            if list(self.relations.shape[:3]) != [batch, size, size] or self.relations.dim() != 4:
                raise StructureInputError(f"relations must be [{batch}, {size}, {size}, R], "
                                          f"got {list(self.relations.shape)}")
            self.relation_names = _check_labels(self.relation_names, self.relations.shape[3], "ArcMarginals")
            if self.relation_names is None:
                raise StructureInputError("relations need relation_names")
