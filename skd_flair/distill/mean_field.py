"""A second-order teacher whose arc marginals come from mean-field inference (case 2b as in the reference).

`TreeScores` covers first-order teachers and exact (projective) second-order teachers. This subclass keeps
the sibling scores aside (``sib_scores``), so that the parser may be non-projective, and answers
``marginals(T, "tree")`` with the mean-field approximation ``Q`` of the parser's scores at temperature T
(``"mfvi"`` is accepted as a synonym); ``"local"`` stays the first-order per-word softmax over heads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..structs._checks import StructureInputError, check_shape
from ..structs.mean_field import mean_field_arc_marginals
from .scores import TreeScores
from .targets import ArcMarginals

__all__ = ["MeanFieldTreeScores"]


@dataclass
class MeanFieldTreeScores(TreeScores):
    """`TreeScores` of a second-order parser read by mean field: ``sib_scores [B, N+1, N+1, N+1]``
    (``[b, h, s, d]``, as `SiblingTree`), ``iterations`` mean-field updates."""

    sib_scores: Optional[torch.Tensor] = None
    iterations: int = 3

    def __post_init__(self):
        super().__post_init__()
        if self.sib_scores is not None:
            size = self.arcs.shape[1]
            check_shape(self.sib_scores, "sib_scores", (self.arcs.shape[0], size, size, size))
        if self.iterations < 0:
            raise StructureInputError(f"iterations must be >= 0, got {self.iterations}")

    @torch.no_grad()
    def marginals(self, temperature: float = 1.0, arc_marginals: str = "tree") -> ArcMarginals:
        if arc_marginals not in ("tree", "mfvi"):
            return super().marginals(temperature, arc_marginals)
        arcs = self.arcs.detach().double() / temperature
        sib = None if self.sib_scores is None else self.sib_scores.detach().double() / temperature
        q = mean_field_arc_marginals(arcs, sib, self.lengths, self.iterations)
        rel = None
        if self.relations is not None:
            rel = torch.softmax(self.relations.detach().double() / temperature, dim=-1)
        return ArcMarginals(q, self.lengths, rel, self.relation_names)
