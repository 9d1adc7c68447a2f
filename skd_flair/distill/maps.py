"""Maps from a teacher's marginals to marginals over a student's substructures.

One map per (teacher marginal type, student factorisation name); adding a teacher/student pairing means
registering a map (here, or beside a new factorisation). Factorisations (``distill.factorisations``):
``"crf"`` (label pairs + first/last label: ChainMarginals), ``"maxent"`` (one label per token:
TokenMarginals), and any registered later. A map only exists where it is exact.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Sequence, Tuple, Type

import torch

from .factorisations import factorisation
from .labels import LabelMismatchError, align_labels, gather_labels
from .targets import ArcMarginals, ChainMarginals, SequenceTargets, TokenMarginals

__all__ = ["to_student", "register_map", "chain_to_chain", "chain_to_tokens", "tokens_to_tokens",
           "tokens_to_chain", "arcs_to_offset_tags", "parse_offset_tag", "align_sequences"]

_MAPS: Dict[Tuple[type, str], Callable] = {}
_LOST_MASS_TOLERANCE = 1e-6


def register_map(source: Type, student_kind: str):
    def add(fn):
        _MAPS[(source, student_kind)] = fn
        return fn

    return add


def to_student(marginals, student_labels: Sequence[str], student_kind: str, **options):
    """Map teacher marginals onto the student's substructures (student label order)."""
    student_kind = factorisation(student_kind).name
    fn = _MAPS.get((type(marginals), student_kind))
    if fn is None:
        known = ", ".join(f"{s.__name__} -> {k}" for s, k in _MAPS)
        raise LabelMismatchError(f"no exact map from {type(marginals).__name__} to a {student_kind} student; "
                                 f"known maps: {known}")
    return fn(marginals, student_labels, **options)


def _index(labels, student_labels) -> torch.Tensor:
    if labels is None:
        raise LabelMismatchError("the teacher's marginals carry no label names, so they cannot be aligned")
    return align_labels(labels, student_labels)


def _check_lost_mass(before: torch.Tensor, after: torch.Tensor, what: str):
    lost = (before - after).abs().max() if before.numel() else 0.0
    if float(lost) > _LOST_MASS_TOLERANCE:
        raise LabelMismatchError(f"{what}: the teacher puts probability {float(lost):.3g} on labels the student "
                                 "cannot take (special labels must be masked before inference)")


@register_map(ChainMarginals, "crf")
def chain_to_chain(m: ChainMarginals, student_labels: Sequence[str]) -> ChainMarginals:
    """Case 1a: the same factorisation; only the label order changes."""
    idx = _index(m.labels, student_labels)
    unary = gather_labels(m.unary, idx, 2, 0.0)
    pairwise = gather_labels(gather_labels(m.pairwise, idx, 2, 0.0), idx, 3, 0.0)
    _check_lost_mass(m.unary.sum(-1), unary.sum(-1), "label pairs")
    return ChainMarginals(unary, pairwise, m.lengths, labels=list(student_labels))


@register_map(ChainMarginals, "maxent")
def chain_to_tokens(m: ChainMarginals, student_labels: Sequence[str]) -> TokenMarginals:
    """Case 2a: a label pair's marginal summed over its other label is the token's marginal."""
    return tokens_to_tokens(TokenMarginals(m.unary, m.lengths, labels=m.labels), student_labels)


@register_map(TokenMarginals, "maxent")
def tokens_to_tokens(m: TokenMarginals, student_labels: Sequence[str]) -> TokenMarginals:
    idx = _index(m.labels, student_labels)
    probs = gather_labels(m.probs, idx, 2, 0.0)
    _check_lost_mass(m.probs.sum(-1), probs.sum(-1), "token labels")
    return TokenMarginals(probs, m.lengths, m.independent, labels=list(student_labels), dropped_mass=m.dropped_mass)


@register_map(TokenMarginals, "crf")
def tokens_to_chain(m: TokenMarginals, student_labels: Sequence[str]) -> ChainMarginals:
    """Case 3: a MaxEnt teacher's tokens are independent, so a pair's marginal is the outer product."""
    if not m.independent:
        raise LabelMismatchError("these token marginals come from a teacher whose tokens are not independent; "
                                 "their outer product is not its pairwise marginal, so no exact map to a CRF exists")
    p = tokens_to_tokens(m, student_labels).probs
    pairwise = p[:, :-1].unsqueeze(-1) * p[:, 1:].unsqueeze(-2)  # padding rows are zero already
    return ChainMarginals(p, pairwise, m.lengths, labels=list(student_labels))


_OFFSET_TAG = re.compile(r"^([+-]?\d+)(?:_(.+))?$")


def parse_offset_tag(tag: str):
    """``"-2_nsubj"`` -> (-2, "nsubj"); ``"3"`` -> (3, None); anything else -> None."""
    match = _OFFSET_TAG.match(tag)
    return None if match is None else (int(match.group(1)), match.group(2))


@register_map(ArcMarginals, "maxent")
def arcs_to_offset_tags(m: ArcMarginals, student_labels: Sequence[str], unknown: str = "renormalize") -> TokenMarginals:
    """Cases 1b/2b: the student tag ``"{h - i}_{rel}"`` of word i has teacher marginal
    ``P(head(i) = h) * P(rel | h -> i)`` (root word: ``"{-i}_root"``, h = 0).

    Teacher mass on (offset, relation) pairs the student has no tag for is lost; `unknown` decides what
    happens to it: ``"renormalize"`` (per word, as the reference code does), ``"unk"`` (onto the student's
    ``<unk>`` tag) or ``"error"``. The lost mass is reported in ``dropped_mass``.
    """
    if unknown not in ("renormalize", "unk", "error"):
        raise ValueError(f"unknown must be 'renormalize', 'unk' or 'error', got {unknown!r}")
    arcs = m.arcs
    batch, size, _ = arcs.shape
    n = size - 1
    device = arcs.device
    rel_index = {name: i for i, name in enumerate(m.relation_names or [])}
    offsets, rels, usable = [], [], []
    for tag in student_labels:
        parsed = parse_offset_tag(tag)
        ok = parsed is not None and ((parsed[1] is None) == (m.relations is None))
        rel = rel_index.get(parsed[1], -1) if ok and parsed[1] is not None else 0
        offsets.append(parsed[0] if ok else 0)
        rels.append(max(rel, 0))
        usable.append(ok and rel >= 0)
    offsets = torch.tensor(offsets, device=device)
    rels = torch.tensor(rels, device=device)
    usable = torch.tensor(usable, device=device, dtype=torch.bool)
    words = torch.arange(1, size, device=device).unsqueeze(1)  # [N, 1] word index i
    heads = words + offsets.unsqueeze(0)  # [N, K]
    possible = usable & (heads >= 0) & (heads <= n) & (heads != words)
    heads = heads.clamp(0, n)
    dep = words.expand_as(heads)
    probs = arcs[:, heads, dep]  # [B, N, K]
    if m.relations is not None:
        probs = probs * m.relations[:, heads, dep, rels.unsqueeze(0).expand_as(heads)]
    mask = (torch.arange(n, device=device).unsqueeze(0) < m.lengths.unsqueeze(1)).unsqueeze(-1)
    probs = torch.where(possible.unsqueeze(0) & mask, probs, probs.new_zeros(()))
    kept = probs.sum(-1)
    dropped = torch.where(mask.squeeze(-1), (1.0 - kept).clamp(min=0.0), kept.new_zeros(()))
    if unknown == "error" and float(dropped.max()) > _LOST_MASS_TOLERANCE:
        raise LabelMismatchError(f"the teacher puts up to {float(dropped.max()):.3g} of a word's mass on "
                                 "(offset, relation) pairs that have no student tag")
    if unknown == "unk":
        if "<unk>" not in student_labels:
            raise LabelMismatchError("unknown='unk' needs an '<unk>' tag in the student's dictionary")
        unk = list(student_labels).index("<unk>")
        probs[..., unk] = probs[..., unk] + dropped
    elif unknown == "renormalize":
        probs = probs / torch.where(kept > 0, kept, kept.new_ones(())).unsqueeze(-1)
    return TokenMarginals(probs, m.lengths, labels=list(student_labels), dropped_mass=dropped)


def align_sequences(t: SequenceTargets, student_labels: Sequence[str]) -> SequenceTargets:
    """Re-index whole label sequences into the student's label order."""
    if t.labels is None:
        raise LabelMismatchError("the teacher's sequences carry no label names, so they cannot be aligned")
    student_pos = {name: i for i, name in enumerate(student_labels)}
    mapping = torch.tensor([student_pos.get(name, -1) for name in t.labels], device=t.tags.device)
    tags = torch.where(t.tags >= 0, mapping[t.tags.clamp(min=0)], t.tags)
    valid = torch.arange(t.tags.shape[2], device=t.tags.device) < t.lengths.view(-1, 1, 1)
    if bool(((tags < 0) & valid & (t.weights > 0).unsqueeze(-1)).any()):
        raise LabelMismatchError("a teacher sequence uses a label the student does not have")
    return SequenceTargets(tags, t.weights, t.lengths, labels=list(student_labels))
