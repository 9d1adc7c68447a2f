"""Input validation shared by the structures: every error names the argument and the shape it needed."""
from __future__ import annotations

from typing import Optional

import torch


class StructureInputError(ValueError):
    """Scores, lengths or labels that a structure cannot be built from."""


def as_lengths(lengths, batch: int, max_len: int, device: torch.device, what: str = "lengths") -> torch.Tensor:
    """Validate `lengths` ([B] integers in 1..max_len) and return them as a long tensor on `device`."""
    if lengths is None:
        return torch.full((batch,), max_len, dtype=torch.long, device=device)
    if not torch.is_tensor(lengths):
        lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise StructureInputError(f"{what} must have shape [{batch}] (one per batch item), got {list(lengths.shape)}")
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise StructureInputError(f"{what} must be integers, got dtype {lengths.dtype}")
    lengths = lengths.to(device=device, dtype=torch.long)
    if batch and int(lengths.min()) < 1:
        raise StructureInputError(f"{what} must be >= 1 (empty sentences have no structure), got {lengths.tolist()}")
    if batch and int(lengths.max()) > max_len:
        raise StructureInputError(f"{what} must be <= {max_len} (the padded size), got {lengths.tolist()}")
    return lengths


def check_scores(x: torch.Tensor, name: str, dims: int) -> torch.Tensor:
    if not torch.is_tensor(x):
        raise StructureInputError(f"{name} must be a tensor, got {type(x).__name__}")
    if x.dim() != dims:
        raise StructureInputError(f"{name} must have {dims} dimensions, got shape {list(x.shape)}")
    if not x.is_floating_point():
        raise StructureInputError(f"{name} must be floating point, got dtype {x.dtype}")
    if x.numel():
        top = x.max()  # one pass finds both: max() propagates NaN
        if torch.isnan(top) or bool(top == float("inf")):
            raise StructureInputError(f"{name} contains NaN or +inf (use large finite or -inf scores for masking)")
    return x


def check_shape(x: Optional[torch.Tensor], name: str, shape) -> Optional[torch.Tensor]:
    if x is None:
        return None
    if not torch.is_tensor(x) or list(x.shape) != list(shape):
        got = list(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise StructureInputError(f"{name} must have shape {list(shape)}, got {got}")
    return x


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, max_len] boolean, True at positions < length."""
    return torch.arange(max_len, device=lengths.device) < lengths.unsqueeze(-1)


NO_TREE = -1e29  # a log Z or tree score at or below this is an impossible tree (Eisner's -inf stand-in is -1e30)


def require_trees(log_z: torch.Tensor, what: str) -> torch.Tensor:
    """``log_z`` (or best-tree scores), unless some batch item has no tree without a -inf arc: then a clear
    error instead of a distribution or a tree through an impossible arc."""
    bad = ~(log_z.detach() > NO_TREE)  # -inf, NaN, and the projective recursion's finite "impossible"
    if bool(bad.any()):
        items = bad.nonzero().squeeze(1).tolist()
        raise StructureInputError(f"batch item(s) {items[:10]} have no valid tree: every tree uses an arc scored "
                                  f"-inf, so there is no {what}")
    return log_z
