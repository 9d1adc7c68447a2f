"""KD objectives and the maps between factorizations, in pure torch (no Flair)."""
from .labels import SPECIAL_LABELS, LabelMismatchError, align_labels
from .factorisations import FACTORISATIONS, Factorisation, factorisation
from .losses import (crf_posterior_loss, crf_sequence_loss, crf_structural_loss, token_cross_entropy,
                     token_sequence_loss)
from .maps import (arcs_to_offset_tags, chain_to_chain, chain_to_tokens, register_map, to_student,
                   tokens_to_chain, tokens_to_tokens)
from .objectives import OBJECTIVES, KDObjective, PosteriorKD, StructuralKD, TokenKD, TopKKD
from .schedules import DEFAULT_MIX, MIX_SCHEDULES, AnnealedMix, ConstantMix, mix_losses
from .mean_field import MeanFieldTreeScores
from .mixture import mix_pieces, mix_targets
from .scores import ChainScores, TreeScores
from .span_scores import SpanScores, SpanTokenMarginals
from .targets import TARGET_KINDS, ArcMarginals, ChainMarginals, SequenceTargets, Targets, TokenMarginals
# every student factorisation registers its maps and target kind on import (a cache may hold any kind)
from .offset_relation import OffsetRelationMarginals, OffsetRelationStudent  # noqa: E402
from .head_relation import HeadRelationMarginals, HeadRelationStudent  # noqa: E402
from .segments import SegmentMarginals, SpanCRFStudent  # noqa: E402
from .temperature import temper

__all__ = [
    "SPECIAL_LABELS", "LabelMismatchError", "align_labels", "FACTORISATIONS", "Factorisation", "factorisation",
    "TARGET_KINDS", "Targets", "SegmentMarginals", "SpanCRFStudent", "OffsetRelationMarginals",
    "OffsetRelationStudent", "HeadRelationMarginals", "HeadRelationStudent",
    "crf_structural_loss", "token_cross_entropy", "crf_posterior_loss", "crf_sequence_loss", "token_sequence_loss",
    "to_student", "register_map", "chain_to_chain", "chain_to_tokens", "tokens_to_chain", "tokens_to_tokens",
    "arcs_to_offset_tags",
    "OBJECTIVES", "KDObjective", "StructuralKD", "TokenKD", "PosteriorKD", "TopKKD",
    "MIX_SCHEDULES", "DEFAULT_MIX", "ConstantMix", "AnnealedMix", "mix_losses", "mix_pieces", "mix_targets",
    "ChainScores", "TreeScores", "MeanFieldTreeScores", "SpanScores", "SpanTokenMarginals", "ChainMarginals", "TokenMarginals", "SequenceTargets", "ArcMarginals", "temper",
]
