"""Frozen transformer embeddings stay in eval mode while their model trains.

Flair's ``model.train()`` reaches every submodule, so a transformer embedding with ``fine_tune: false`` runs its
dropout during training (Flair's own ``FlairEmbeddings`` override ``train`` to prevent exactly this; its
``TransformerEmbeddings`` do not). A frozen feature extractor then gives random features in training and clean
ones at evaluation, and with ``embeddings_storage_mode: cpu`` one random draw is stored at epoch 1 and reused for
every later epoch, where a run resumed from a checkpoint draws another: the resumed teacher is not the
uninterrupted one. Every model class of this package derives from ``FrozenEmbeddingsStayEval``.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from flair.embeddings import StackedEmbeddings
from flair.embeddings.transformer import TransformerEmbeddings

__all__ = ["FrozenEmbeddingsStayEval", "frozen_transformers", "frozen_dropout_as_before"]

_DROPOUT_AS_BEFORE = False


@contextmanager
def frozen_dropout_as_before():
    """Models trained inside this block run a frozen transformer's dropout in training, as every model did before
    ``FrozenEmbeddingsStayEval`` existed. Only for training a lost model again exactly as it was first trained
    (``python -m experiments.run SUITE --teacher-only --reproduce``), never as a recipe."""
    global _DROPOUT_AS_BEFORE
    before, _DROPOUT_AS_BEFORE = _DROPOUT_AS_BEFORE, True
    try:
        yield
    finally:
        _DROPOUT_AS_BEFORE = before


def frozen_transformers(embeddings) -> Iterator[torch.nn.Module]:
    members = embeddings.embeddings if isinstance(embeddings, StackedEmbeddings) else [embeddings]
    for member in members:
        if isinstance(member, TransformerEmbeddings) and not member.fine_tune:
            yield member


class FrozenEmbeddingsStayEval:
    """Mixin for a Flair model with an ``embeddings`` attribute (listed before the Flair base class)."""

    def train(self, mode: bool = True):
        super().train(mode)
        if _DROPOUT_AS_BEFORE:
            return self
        for member in frozen_transformers(getattr(self, "embeddings", None)):
            member.eval()
        return self
