"""Several teachers, one student: structural KD to a weighted mixture of teachers, exactly.

The cross-entropy to a mixture of teachers, ``-sum_y sum_k w_k P_k(y) log P_s(y)``, equals
``log Z_s - sum_u (sum_k w_k P_k(u)) s_s(u)``: the factorised loss is linear in the teacher's marginals, so a
mixture needs only the weighted mean of the teachers' marginals over the student's substructures (each teacher
already mapped to them, whatever its own factorisation). Top-K sequence targets are not marginals and do not mix
this way. Pieces are mixed per sentence when a batch is built, so a changed weight never re-runs a teacher.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch

from .targets import target_type

__all__ = ["mix_pieces", "mix_targets", "normalise_weights"]


def normalise_weights(weights: Sequence[float]) -> List[float]:
    weights = [float(w) for w in weights]
    if not weights or any(not w >= 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"teacher weights must be >= 0 with a positive sum, got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


def mix_pieces(pieces: Sequence[Dict[str, torch.Tensor]], weights: Sequence[float]) -> Dict[str, torch.Tensor]:
    """The weighted mean of per-sentence target pieces of one kind (weights are normalised)."""
    weights = normalise_weights(weights)
    if len(pieces) != len(weights):
        raise ValueError(f"{len(pieces)} pieces but {len(weights)} weights")
    kinds = {p["kind"] for p in pieces}
    if len(kinds) != 1:
        raise ValueError(f"cannot mix target kinds {sorted(kinds)}: every teacher must target the student's "
                         "substructures with the same objective")
    kind = kinds.pop()
    cls = target_type(kind)
    cls.check_mixable()
    out = {"kind": kind}
    for field in cls.layout:
        shapes = {tuple(p[field].shape) for p in pieces}
        if len(shapes) != 1:
            raise ValueError(f"the teachers' {field} targets differ in shape {sorted(shapes)}: not the same sentence")
        out[field] = sum(w * p[field].to(torch.float64) for w, p in zip(weights, pieces)).to(pieces[0][field].dtype)
    return out


def mix_targets(targets: Sequence, weights: Sequence[float]):
    """The weighted mean of batched targets of one mixable type (same lengths and labels). A mixture of
    independent (MaxEnt) teachers is no longer independent: the result says so."""
    weights = normalise_weights(weights)
    first = targets[0]
    if not all(type(t) is type(first) for t in targets):
        raise ValueError("cannot mix targets of different kinds")
    if not all(torch.equal(t.lengths, first.lengths) for t in targets):
        raise ValueError("the teachers' targets cover different sentence lengths")
    return first.mix(targets, weights)
