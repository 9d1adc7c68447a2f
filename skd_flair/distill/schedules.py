"""Mixing the KD loss with the gold loss: ``lambda * L_KD + (1 - lambda) * L_gold``."""
from __future__ import annotations

from typing import Annotated

import torch

from ..registry import Registry
from ..types import Ge, Probability

__all__ = ["MIX_SCHEDULES", "DEFAULT_MIX", "ConstantMix", "AnnealedMix", "mix_losses"]

MIX_SCHEDULES = Registry("mix schedule")

# The default recipe's mix (what ``mix: null`` means): the KD and gold terms weighted equally from the first
# step to the last. At T=1 their gradients have the same scale (norm ratio 0.98-1.02 at the first epoch on
# CoNLL-2003 English and WikiANN German, `experiments/results/recipe_*`), so neither drowns the other; the
# reference's annealing (pure KD at first) hands the student to a teacher that is wrong on about 3% of its own
# training tokens (WikiANN German) for the epochs that shape it most, and lost 7 F1 in the demo.
DEFAULT_MIX = {"type": "constant", "weight": 0.5}


@MIX_SCHEDULES.register("constant")
class ConstantMix:
    """A fixed lambda (1 = KD only, 0 = gold only)."""

    def __init__(self, weight: Probability = 0.5):
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"mix weight must be in [0, 1], got {weight}")
        self.weight = float(weight)

    def __call__(self, progress: float) -> float:
        return self.weight

    def __repr__(self):
        return f"ConstantMix(weight={self.weight})"


@MIX_SCHEDULES.register("annealed")
class AnnealedMix:
    """The reference code's teacher annealing: lambda = max(0, 1 - progress * factor / 100), where progress
    counts epochs (fractional within an epoch). Pure KD at the start, gold only after 100 / factor epochs."""

    def __init__(self, factor: Annotated[float, Ge(0)] = 1.0):
        if factor < 0:
            raise ValueError(f"annealing factor must be >= 0, got {factor}")
        self.factor = float(factor)

    def __call__(self, progress: float) -> float:
        return max(0.0, 1.0 - progress * self.factor / 100.0)

    def __repr__(self):
        return f"AnnealedMix(factor={self.factor})"


def mix_losses(kd: torch.Tensor, gold: torch.Tensor, weight: float, labelled: torch.Tensor) -> torch.Tensor:
    """Per-sentence mixture: labelled sentences get ``weight * kd + (1 - weight) * gold``; unlabelled ones have
    no gold term and learn from the teacher alone (``kd``)."""
    mixed = weight * kd + (1.0 - weight) * gold
    return torch.where(labelled, mixed, kd)
