"""Exact inference over structures in pure torch (no Flair): log-partition, marginals, decoding."""
from ._checks import StructureInputError
from .base import Structure
from .dependency import DependencyTree
from .linear_chain import LinearChainCRF
from .mean_field import mean_field_arc_marginals
from .second_order import SiblingTree
from .semi_markov import SemiMarkovCRF
from .spans import LabelledSpans

__all__ = ["StructureInputError", "Structure", "SemiMarkovCRF", "LinearChainCRF", "DependencyTree", "LabelledSpans", "SiblingTree", "mean_field_arc_marginals"]
