"""Per-sentence pieces of teacher targets, and batches re-made from them.

Targets are computed and cached one sentence at a time (so they do not depend on how sentences were
batched), then padded back into a batch in whatever order training asks for. The layout of each kind of
target is its own (``targets.Targets.layout``); these functions only look the kind up.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch

from .targets import Targets, target_type

__all__ = ["split_targets", "collate_targets", "piece_length"]

Piece = Dict[str, torch.Tensor]


def split_targets(targets: Targets) -> List[Piece]:
    """One dict of unpadded tensors per batch item."""
    if not isinstance(targets, Targets):
        raise TypeError(f"cannot split {type(targets).__name__}: not student targets")
    return targets.split()


def piece_length(piece: Piece) -> int:
    """The number of tokens a piece covers."""
    return target_type(piece["kind"]).piece_length(piece)


def collate_targets(pieces: Sequence[Piece], labels=None, device=None, dtype=None) -> Targets:
    """Pad per-sentence pieces (all of one kind) into a batch of targets."""
    kinds = {p["kind"] for p in pieces}
    if len(kinds) != 1:
        raise ValueError(f"a batch mixes target kinds {sorted(kinds)}")
    return target_type(kinds.pop()).collate(pieces, labels, device=device, dtype=dtype)
