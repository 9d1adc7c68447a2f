"""Per-sentence pieces of teacher targets, and batches re-made from them.

Targets are computed and cached one sentence at a time (so they do not depend on how sentences were
batched), then padded back into a batch in whatever order training asks for.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch

from .targets import ChainMarginals, SequenceTargets, TokenMarginals

__all__ = ["split_targets", "collate_targets", "piece_length"]

Piece = Dict[str, torch.Tensor]


def split_targets(targets) -> List[Piece]:
    """One dict of unpadded tensors per batch item."""
    lengths = targets.lengths.tolist()
    if isinstance(targets, TokenMarginals):
        return [{"kind": "tokens", "probs": targets.probs[b, :n]} for b, n in enumerate(lengths)]
    if isinstance(targets, ChainMarginals):
        return [{"kind": "chain", "unary": targets.unary[b, :n], "pairwise": targets.pairwise[b, :n - 1]}
                for b, n in enumerate(lengths)]
    if isinstance(targets, SequenceTargets):
        return [{"kind": "sequences", "tags": targets.tags[b, :, :n], "weights": targets.weights[b]}
                for b, n in enumerate(lengths)]
    raise TypeError(f"cannot split {type(targets).__name__}")


def piece_length(piece: Piece) -> int:
    """The number of tokens a piece covers."""
    if piece["kind"] == "sequences":
        return piece["tags"].shape[1]
    return piece["probs" if piece["kind"] == "tokens" else "unary"].shape[0]


def _pad(tensors: Sequence[torch.Tensor], dim: int, size: int, value=0.0) -> torch.Tensor:
    out = []
    for t in tensors:
        shape = list(t.shape)
        shape[dim] = size - t.shape[dim]
        out.append(torch.cat([t, t.new_full(shape, value)], dim) if shape[dim] > 0 else t)
    return torch.stack(out)


def collate_targets(pieces: Sequence[Piece], labels=None, device=None, dtype=None):
    """Pad per-sentence pieces (all of one kind) into a batch of targets."""
    kinds = {p["kind"] for p in pieces}
    if len(kinds) != 1:
        raise ValueError(f"a batch mixes target kinds {sorted(kinds)}")
    kind = kinds.pop()
    conv = lambda x: x.to(device=device, dtype=dtype)  # noqa: E731
    if kind == "tokens":
        lengths = torch.tensor([p["probs"].shape[0] for p in pieces], device=device)
        n = int(lengths.max())
        return TokenMarginals(conv(_pad([p["probs"] for p in pieces], 0, n)), lengths, labels)
    if kind == "chain":
        lengths = torch.tensor([p["unary"].shape[0] for p in pieces], device=device)
        n = int(lengths.max())
        return ChainMarginals(conv(_pad([p["unary"] for p in pieces], 0, n)),
                              conv(_pad([p["pairwise"] for p in pieces], 0, max(n - 1, 0))), lengths, labels)
    if kind == "sequences":
        lengths = torch.tensor([p["tags"].shape[1] for p in pieces], device=device)
        n = int(lengths.max())
        tags = _pad([p["tags"] for p in pieces], 1, n, value=-1).to(device)
        weights = conv(torch.stack([p["weights"] for p in pieces]))
        return SequenceTargets(tags, weights, lengths, labels)
    raise ValueError(f"unknown target kind {kind!r}")
