"""Teacher marginals over a student's substructures: what the KD losses consume and the cache stores.

Every student target type derives from `Targets` and says, once, how it is laid out (`layout`: which fields
have a token axis, and how the cache stores them). Splitting into per-sentence pieces, padding pieces back into
a batch, mixing teachers, tempering and the per-token view used by diagnostics are methods of the type, so code
that moves targets around (batching, the cache, mixtures, diagnostics) never asks which type it holds. A new
student factorisation brings its own `Targets` subclass; defining the class registers its `kind`.
"""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, replace
from typing import ClassVar, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from ..structs._checks import StructureInputError, as_lengths, length_mask
from .temperature import temper_distribution

__all__ = ["Field", "Targets", "TARGET_KINDS", "target_type", "batch_shape", "TokenMarginals", "ChainMarginals",
           "SequenceTargets", "ArcMarginals"]

Piece = Dict[str, torch.Tensor]
TARGET_KINDS: Dict[str, type] = {}


class Field(NamedTuple):
    """Where a field's token axis is (None: no token axis) and its size there (sentence length + `offset`:
    -1 for pairs of neighbours); `store` is how the cache keeps it (``"sparse"`` probabilities, ``"index"``
    integers padded with -1, ``"dense"`` floats)."""

    axis: Optional[int] = 0
    offset: int = 0
    store: str = "sparse"


def target_type(kind: str) -> type:
    try:
        return TARGET_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown target kind {kind!r}; known: {sorted(TARGET_KINDS)}") from None


def _check_labels(labels: Optional[Sequence[str]], size: int, what: str) -> Optional[List[str]]:
    if labels is None:
        return None
    labels = list(labels)
    if len(labels) != size:
        raise StructureInputError(f"{what}: {len(labels)} label names for {size} label columns")
    if len(set(labels)) != len(labels):
        raise StructureInputError(f"{what}: duplicate label names")
    return labels


def batch_shape(tensor: torch.Tensor, name: str, layout: str) -> Tuple[int, int, int]:
    """(B, N, L) of `tensor` ``[B, N, ..., L]``, whose dimensions `layout` names (``"B, N, L"``)."""
    if tensor.dim() != len(layout.split(",")):
        raise StructureInputError(f"{name} must be [{layout}], got {list(tensor.shape)}")
    return tensor.shape[0], tensor.shape[1], tensor.shape[-1]


def check_with_pairs(first: torch.Tensor, first_name: str, layout: str, pairs: torch.Tensor, pairs_name: str):
    """`first` ``[B, N, ..., L]`` (`layout` names its dimensions) and `pairs` ``[B, N-1, L, L]`` of neighbours;
    returns (B, N, L)."""
    batch, n, size = batch_shape(first, first_name, layout)
    if list(pairs.shape) != [batch, max(n - 1, 0), size, size]:
        raise StructureInputError(f"{pairs_name} must be [{batch}, {n - 1}, {size}, {size}], got {list(pairs.shape)}")
    return batch, n, size


def _pad(tensors: Sequence[torch.Tensor], dim: int, size: int, value=0.0) -> torch.Tensor:
    out = []
    for t in tensors:
        shape = list(t.shape)
        shape[dim] = size - t.shape[dim]
        out.append(torch.cat([t, t.new_full(shape, value)], dim) if shape[dim] > 0 else t)
    return torch.stack(out)


@dataclass
class Targets:
    """Base of the student target types: dataclasses whose positional fields are their `layout` tensors and
    ``lengths``; every type takes `labels` and `dropped_mass` by keyword. Each type checks its tensors in
    `_shape`."""

    kind: ClassVar[str] = ""
    layout: ClassVar[Dict[str, Field]] = {}
    mixable: ClassVar[bool] = True  # the loss is linear in these targets, so a weighted mean of teachers is exact

    _: KW_ONLY
    labels: Optional[List[str]] = None  # the student labels of the label axis
    # teacher mass per token that no student label could take (diagnostics of a lossy map)
    dropped_mass: Optional[torch.Tensor] = None

    dims: ClassVar[str] = "B, N, L"  # the dimensions of the first field of the layout

    def _shape(self) -> Tuple[int, int, Optional[int]]:
        """(batch, tokens, labels) after checking the tensors (labels None: `labels` is not checked). By default
        the first field is [`dims`] and a field of neighbour pairs (offset -1), if any, is ``[B, N-1, L, L]``."""
        (first, _), *rest = self.layout.items()
        pairs = next((name for name, f in rest if f.offset == -1), None)
        if pairs is None:
            return batch_shape(getattr(self, first), first, self.dims)
        return check_with_pairs(getattr(self, first), first, self.dims, getattr(self, pairs), pairs)

    def __post_init__(self):
        batch, n, size = self._shape()
        name, _ = self._token_field()
        self.lengths = as_lengths(self.lengths, batch, n, getattr(self, name).device)
        if size is not None:
            self.labels = _check_labels(self.labels, size, type(self).__name__)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            TARGET_KINDS[cls.kind] = cls

    def split(self) -> List[Piece]:
        """One dict of unpadded tensors per batch item (``"kind"`` names the type)."""
        pieces = []
        for b, n in enumerate(self.lengths.tolist()):
            piece = {"kind": self.kind}
            for name, field in self.layout.items():
                value = getattr(self, name)[b]
                if field.axis is not None:
                    value = value.narrow(field.axis, 0, n + field.offset)
                piece[name] = value
            pieces.append(piece)
        return pieces

    @classmethod
    def _token_field(cls):
        """(name, Field) of the first field with a token axis: the one that says how long a sentence is."""
        return next((k, f) for k, f in cls.layout.items() if f.axis is not None)

    @classmethod
    def piece_length(cls, piece: Piece) -> int:
        """The number of tokens a piece covers."""
        name, field = cls._token_field()
        return piece[name].shape[field.axis] - field.offset

    @classmethod
    def collate(cls, pieces: Sequence[Piece], labels=None, device=None, dtype=None):
        """Pad per-sentence pieces of this type into a batch (floats converted to `dtype`)."""
        lengths = torch.tensor([cls.piece_length(p) for p in pieces], device=device)
        n = int(lengths.max())
        fields = {}
        for name, field in cls.layout.items():
            values = [p[name] for p in pieces]
            index = field.store == "index"  # integers: padded with -1, never converted to `dtype`
            value = torch.stack(values) if field.axis is None else \
                _pad(values, field.axis, max(n + field.offset, 0), -1 if index else 0.0)
            fields[name] = value.to(device=device, dtype=None if index else dtype)
        return cls(lengths=lengths, labels=labels, **fields)

    @classmethod
    def check_mixable(cls):
        if not cls.mixable:
            raise ValueError(f"targets of kind {cls.kind!r} ({cls.__name__}) do not mix exactly; use a marginal "
                             "objective (structural, posterior, token) with several teachers")

    @classmethod
    def mix(cls, targets: Sequence["Targets"], weights: Sequence[float]) -> "Targets":
        """The weighted mean of batched targets of this type (weights already normalised)."""
        cls.check_mixable()
        first = targets[0]
        fields = {name: sum(w * getattr(t, name) for w, t in zip(weights, targets)) for name in cls.layout}
        return cls(lengths=first.lengths, labels=first.labels, **fields)

    def temper(self, temperature: float) -> "Targets":
        """Local tempering (see ``distill.temperature``)."""
        raise ValueError(f"{type(self).__name__} targets cannot be tempered locally; use temperature_mode 'global'")

    def token_probs(self) -> torch.Tensor:
        """``[B, N, L]`` per-token distribution the targets imply (for diagnostics)."""
        raise NotImplementedError

    @property
    def mask(self) -> torch.Tensor:
        name, field = self._token_field()
        return length_mask(self.lengths, getattr(self, name).shape[field.axis + 1] - field.offset)

    def to(self, device=None, dtype=None):
        return replace(self, lengths=self.lengths.to(device=device),
                       **{name: getattr(self, name).to(device=device, dtype=None if f.store == "index" else dtype)
                          for name, f in self.layout.items()})


@dataclass
class TokenMarginals(Targets):
    """``probs[b, t, j]``: probability that token t takes label j (zero on padding).

    The student substructure of every locally normalised student (cases 1b, 2a, 2b, 4) and of posterior
    and token-level KD.
    """

    kind: ClassVar[str] = "tokens"
    layout: ClassVar[Dict[str, Field]] = {"probs": Field()}

    probs: torch.Tensor
    lengths: torch.Tensor
    # True when the tokens are independent under the teacher (a MaxEnt teacher): only then is the
    # outer product of neighbours the teacher's pairwise marginal
    independent: bool = False

    def temper(self, temperature: float) -> "TokenMarginals":
        return replace(self, probs=temper_distribution(self.probs, temperature, -1))

    def token_probs(self) -> torch.Tensor:
        return self.probs


@dataclass
class ChainMarginals(Targets):
    """Marginals of a linear-chain student's substructures (cases 1a and 3).

    ``unary[b, t, j] = P(y_t = j)`` weights the emissions (and, at the first and last position, the start
    and end scores); ``pairwise[b, t, i, j] = P(y_t = i, y_{t+1} = j)`` weights the transitions.
    """

    kind: ClassVar[str] = "chain"
    layout: ClassVar[Dict[str, Field]] = {"unary": Field(), "pairwise": Field(offset=-1)}

    unary: torch.Tensor
    pairwise: torch.Tensor
    lengths: torch.Tensor

    def temper(self, temperature: float) -> "ChainMarginals":
        """The pair distribution at each position and the first label's distribution are tempered; emission
        weights at later positions and the last label's weight are the marginals of the tempered pairs (the
        reference tempers the last label separately; the two agree at T = 1)."""
        pairwise = temper_distribution(self.pairwise, temperature, (-2, -1))
        first = temper_distribution(self.unary[:, :1], temperature, -1)
        return replace(self, unary=torch.cat([first, pairwise.sum(-2)], dim=1), pairwise=pairwise)

    def token_probs(self) -> torch.Tensor:
        return self.unary


@dataclass
class SequenceTargets(Targets):
    """Whole label sequences with weights (Top-K KD): ``tags [B, K, N]`` (-1 on padding or missing ranks),
    ``weights [B, K]`` summing to one over the ranks that exist."""

    kind: ClassVar[str] = "sequences"
    layout: ClassVar[Dict[str, Field]] = {"tags": Field(axis=1, store="index"),
                                          "weights": Field(axis=None, store="dense")}
    mixable: ClassVar[bool] = False  # sequences are not marginals: a mean of teachers' k-best lists is no target

    tags: torch.Tensor
    weights: torch.Tensor
    lengths: torch.Tensor

    def _shape(self):
        if self.tags.dim() != 3 or list(self.weights.shape) != list(self.tags.shape[:2]):
            raise StructureInputError(f"tags must be [B, K, N] and weights [B, K]; got {list(self.tags.shape)}"
                                      f" and {list(self.weights.shape)}")
        return self.tags.shape[0], self.tags.shape[2], None

    def temper(self, temperature: float):
        raise ValueError("Top-K sequences have no temperature")

    def token_probs(self) -> torch.Tensor:
        """A weighted vote of the sequences."""
        size = len(self.labels) if self.labels is not None else int(self.tags.max()) + 1
        onehot = torch.nn.functional.one_hot(self.tags.clamp(min=0), size).to(self.weights.dtype)
        onehot = onehot * (self.tags >= 0).unsqueeze(-1)
        return (onehot * self.weights.view(*self.weights.shape, 1, 1)).sum(1)

    @property
    def mask(self) -> torch.Tensor:
        return length_mask(self.lengths, self.tags.shape[2])


@dataclass
class ArcMarginals:
    """A dependency teacher's marginals: ``arcs[b, h, d] = P(head(d) = h)`` (index 0 = root) and, when it
    labels arcs, ``relations[b, h, d, r] = P(rel(d) = r | head(d) = h)`` with names `relation_names`.
    Teacher-side only: maps turn them into a student's targets."""

    arcs: torch.Tensor
    lengths: torch.Tensor
    relations: Optional[torch.Tensor] = None
    relation_names: Optional[List[str]] = None

    def __post_init__(self):
        if self.arcs.dim() != 3 or self.arcs.shape[1] != self.arcs.shape[2]:
            raise StructureInputError(f"arcs must be [B, N+1, N+1], got {list(self.arcs.shape)}")
        batch, size, _ = self.arcs.shape
        self.lengths = as_lengths(self.lengths, batch, size - 1, self.arcs.device)
        if self.relations is not None:
            if list(self.relations.shape[:3]) != [batch, size, size] or self.relations.dim() != 4:
                raise StructureInputError(f"relations must be [{batch}, {size}, {size}, R], "
                                          f"got {list(self.relations.shape)}")
            self.relation_names = _check_labels(self.relation_names, self.relations.shape[3], "ArcMarginals")
            if self.relation_names is None:
                raise StructureInputError("relations need relation_names")
