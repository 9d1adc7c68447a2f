"""Aligning a teacher's label set to a student's by name."""
from __future__ import annotations

from typing import Sequence

import torch

from ..structs._checks import StructureInputError

# never real tags: Flair's CRF bookkeeping labels and the unknown label carry no teacher mass
SPECIAL_LABELS = ("<START>", "<STOP>", "<unk>")


class LabelMismatchError(StructureInputError):
    """The teacher's and the student's label sets cannot be aligned."""


def align_labels(source: Sequence[str], target: Sequence[str], special: Sequence[str] = SPECIAL_LABELS,
                 what: str = "teacher", into: str = "student") -> torch.Tensor:
    """``index[j]`` = position in `source` of target label j, or -1 where the source lacks it (or it is special).

    Every non-special source label must exist in the target: otherwise its probability mass would be
    silently lost, which is an error naming the labels on both sides.
    """
    source, target = list(source), list(target)
    special = set(special)
    position = {name: i for i, name in enumerate(source) if name not in special}
    missing = [name for name in position if name not in set(target)]
    if missing:
        raise LabelMismatchError(
            f"the {what} predicts labels the {into} does not have: {missing}. {what} labels: {source}; "
            f"{into} labels: {target}. Build both label dictionaries from the same corpus and tag format.")
    return torch.tensor([position.get(name, -1) for name in target], dtype=torch.long)


def gather_labels(x: torch.Tensor, index: torch.Tensor, dim: int, fill: float) -> torch.Tensor:
    """Select label columns of `x` along `dim` by `index`, writing `fill` where the index is -1."""
    index = index.to(x.device)
    picked = x.index_select(dim, index.clamp(min=0))
    shape = [1] * x.dim()
    shape[dim] = -1
    return picked.masked_fill((index < 0).view(shape), fill)
