"""Model scores in structure form: what a teacher hands to an objective and what a student's loss reads.

A teacher gives raw scores; the objective decides at which temperature to take its marginals (globally
tempered teachers need the scores, not the marginals), always in float64 and without an autograd graph.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional, Sequence

import torch

from ..structs import DependencyTree, LinearChainCRF
from ..structs._checks import StructureInputError, as_lengths, length_mask
from ..structs.dependency import arc_mask
from .labels import SPECIAL_LABELS
from .targets import ArcMarginals, ChainMarginals, SequenceTargets, TokenMarginals, batch_shape

__all__ = ["ChainScores", "TreeScores"]


def _scale(x: Optional[torch.Tensor], temperature: float) -> Optional[torch.Tensor]:
    return x if x is None or temperature == 1.0 else x / temperature


@dataclass
class ChainScores:
    """Scores of a tagger over label sequences: a linear-chain CRF when `transitions` is given, otherwise a
    MaxEnt (per-token softmax) tagger.

    emissions ``[B, N, L]``; transitions ``[L, L]`` (``[i, j]`` = label i followed by j); start/end ``[L]``;
    ``labels`` names the L columns.
    """

    emissions: torch.Tensor
    lengths: torch.Tensor
    labels: Optional[List[str]] = None
    transitions: Optional[torch.Tensor] = None
    start: Optional[torch.Tensor] = None
    end: Optional[torch.Tensor] = None

    def __post_init__(self):
        batch, n, size = batch_shape(self.emissions, "emissions", "B, N, L")
        self.lengths = as_lengths(self.lengths, batch, n, self.emissions.device)
        if self.labels is not None and len(self.labels) != size:
            raise StructureInputError(f"{len(self.labels)} label names for {size} emission columns")
        if self.transitions is None and (self.start is not None or self.end is not None):
            raise StructureInputError("start/end scores need transitions (a CRF)")

    @property
    def is_crf(self) -> bool:
        return self.transitions is not None

    @property
    def factorisation(self) -> str:
        """The student factorisation these scores are (``distill.factorisations``)."""
        return "crf" if self.is_crf else "maxent"

    @property
    def mask(self) -> torch.Tensor:
        return length_mask(self.lengths, self.emissions.shape[1])

    def without_special(self, special: Sequence[str] = SPECIAL_LABELS) -> "ChainScores":
        """Special labels (CRF <START>/<STOP>, <unk>) made impossible, as a teacher's must be."""
        if self.labels is None or not any(name in special for name in self.labels):
            return self
        cols = torch.tensor([name in special for name in self.labels], device=self.emissions.device)
        return replace(self, emissions=self.emissions.masked_fill(cols, float("-inf")))

    def double(self) -> "ChainScores":
        conv = lambda x: None if x is None else x.detach().double()  # noqa: E731
        return replace(self, emissions=conv(self.emissions), transitions=conv(self.transitions),
                       start=conv(self.start), end=conv(self.end))

    def crf(self, temperature: float = 1.0) -> LinearChainCRF:
        if not self.is_crf:
            raise StructureInputError("a MaxEnt tagger has no CRF")
        t = temperature
        return LinearChainCRF(self.emissions / t, self.transitions / t, self.lengths, _scale(self.start, t),
                              _scale(self.end, t))

    def log_softmax(self, temperature: float = 1.0) -> torch.Tensor:
        """``[B, N, L]`` per-token log-softmax of the emissions at temperature T (0 on padding)."""
        logp = torch.log_softmax(self.emissions / temperature, dim=-1)
        return logp.masked_fill(~self.mask.unsqueeze(-1), 0.0)

    @torch.no_grad()
    def marginals(self, temperature: float = 1.0):
        """The teacher's marginals at global temperature T: ChainMarginals for a CRF (pairwise and unary),
        TokenMarginals (independent tokens) for a MaxEnt tagger. Float64, no graph."""
        scores = self.double()
        if not self.is_crf:
            probs = scores.log_softmax(temperature).exp().masked_fill(~self.mask.unsqueeze(-1), 0.0)
            return TokenMarginals(probs, self.lengths, independent=True, labels=self.labels)
        crf = scores.crf(temperature)
        return ChainMarginals(crf.marginals, crf.pairwise_marginals, self.lengths, labels=self.labels)

    @torch.no_grad()
    def unary_marginals(self, temperature: float = 1.0) -> TokenMarginals:
        m = self.marginals(temperature)
        if isinstance(m, TokenMarginals):
            return m
        return TokenMarginals(m.unary, m.lengths, labels=m.labels)

    @torch.no_grad()
    def emission_probs(self, temperature: float = 1.0) -> TokenMarginals:
        """Softmax of the emissions alone (token-level KD: a CRF teacher's transitions are ignored)."""
        probs = self.double().log_softmax(temperature).exp().masked_fill(~self.mask.unsqueeze(-1), 0.0)
        return TokenMarginals(probs, self.lengths, independent=True, labels=self.labels)

    @torch.no_grad()
    def topk(self, k: int, weighted: bool = False) -> SequenceTargets:
        """The k best sequences, weighted uniformly or by their renormalised probabilities."""
        scores = self.double()
        if scores.is_crf:
            tags, path_scores = scores.crf().topk(k)
        else:
            # a MaxEnt tagger is a CRF without transitions
            size = self.emissions.shape[-1]
            zeros = scores.emissions.new_zeros(size, size)
            tags, path_scores = LinearChainCRF(scores.emissions, zeros, self.lengths).topk(k)
        exists = torch.isfinite(path_scores)
        if weighted:
            weights = torch.softmax(path_scores, dim=1)
        else:
            weights = exists.double() / exists.sum(1, keepdim=True)
        # a missing rank repeats the best sequence with weight 0, so that every row is a valid sequence
        tags = torch.where(exists.unsqueeze(-1), tags, tags[:, :1].expand_as(tags))
        return SequenceTargets(tags, weights.masked_fill(~exists, 0.0), self.lengths, labels=self.labels)


@dataclass
class TreeScores:
    """Scores of a first- or second-order graph-based dependency parser.

    arcs ``[B, N+1, N+1]`` (``[b, h, d]``, 0 = root); relations ``[B, N+1, N+1, R]`` relation logits per arc;
    siblings ``[B, N+1, N+1, N+1]`` second-order adjacent-sibling scores (``[b, h, s, d]``, projective only).
    """

    arcs: torch.Tensor
    lengths: torch.Tensor
    relations: Optional[torch.Tensor] = None
    relation_names: Optional[List[str]] = None
    projective: bool = False
    single_root: bool = True
    siblings: Optional[torch.Tensor] = None

    def __post_init__(self):
        if self.arcs.dim() != 3:
            raise StructureInputError(f"arcs must be [B, N+1, N+1], got {list(self.arcs.shape)}")
        self.lengths = as_lengths(self.lengths, self.arcs.shape[0], self.arcs.shape[1] - 1, self.arcs.device)
        if self.siblings is not None and not self.projective:
            raise StructureInputError("second-order (sibling) trees are exact only when projective")

    def tree(self, temperature: float = 1.0):
        arcs = self.arcs.detach().double() / temperature
        if self.siblings is None:
            return DependencyTree(arcs, self.lengths, projective=self.projective, single_root=self.single_root)
        from ..structs.second_order import SiblingTree

        return SiblingTree(arcs, self.siblings.detach().double() / temperature, self.lengths,
                           single_root=self.single_root)

    @torch.no_grad()
    def marginals(self, temperature: float = 1.0, arc_marginals: str = "tree") -> ArcMarginals:
        """Arc marginals at global temperature T: exact tree-constrained ("tree") or the reference code's
        per-word softmax over heads ("local"); relation probabilities per arc."""
        if arc_marginals == "tree":
            arcs = self.tree(temperature).marginals
        elif arc_marginals == "local":
            valid = arc_mask(self.lengths, self.arcs.shape[1])
            logits = (self.arcs.detach().double() / temperature).masked_fill(~valid, float("-inf"))
            arcs = torch.softmax(logits, dim=1).nan_to_num(0.0)  # column 0 and padding have no head
        else:
            raise StructureInputError(f"arc_marginals must be 'tree' or 'local', got {arc_marginals!r}")
        rel = None
        if self.relations is not None:
            rel = torch.softmax(self.relations.detach().double() / temperature, dim=-1)
        return ArcMarginals(arcs, self.lengths, rel, self.relation_names)
