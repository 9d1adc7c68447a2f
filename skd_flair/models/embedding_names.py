"""Stacked embedding names that survive saving and loading.

A model reads its token features with ``token.get_embedding(names)``, which concatenates them in the *sorted*
order of the names, so the feature layout the model was trained on is fixed by the names its stacked members
had in training (``"0-one-hot-text"``, ``"1-Char"``). Flair's ``StackedEmbeddings`` saves each member and
reloads it with ``overwrite_names=False``, but some members do not save their name: ``OneHotEmbeddings`` comes
back as ``"one-hot-text"``, which sorts after ``"1-Char"``, so a reloaded model feeds its LSTM the two blocks
swapped and predicts garbage with no error. Every model class of this package derives from ``KeepsStackNames``,
which saves the members' names with the model and puts them back on load.
"""
from __future__ import annotations

import re
from typing import List, Optional

from flair.embeddings import StackedEmbeddings

__all__ = ["KeepsStackNames", "stack_names", "restore_stack_names"]


def stack_names(embeddings) -> Optional[List[str]]:
    """The names of a stack's members, in stack order (None for a single embedding)."""
    if isinstance(embeddings, StackedEmbeddings):
        return [member.name for member in embeddings.embeddings]
    return None


def _guessed(names: List[str]) -> List[str]:
    """For a file saved without its names: every member was ``<prefix><i>-<name>`` in training (Flair numbers
    the members, ``name_prefix`` may prepend a prefix); a member that lost its name gets that shape back."""
    prefix = ""
    for i, name in enumerate(names):
        found = re.match(rf"^(.*?){i}-", name)
        if found:
            prefix = found.group(1)
            break
    return [name if re.match(rf"^.*?{i}-", name) else f"{prefix}{i}-{name}" for i, name in enumerate(names)]


def restore_stack_names(embeddings, saved: Optional[List[str]]) -> None:
    """Give a loaded stack's members the names they had in training (`saved`, from `stack_names`), in place."""
    if not isinstance(embeddings, StackedEmbeddings):
        return
    members = embeddings.embeddings
    current = [member.name for member in members]
    names = list(saved) if saved is not None and len(saved) == len(members) else _guessed(current)
    for member, name in zip(members, names):
        member.name = name
    # StackedEmbeddings keeps a private copy of its members' names
    embeddings._StackedEmbeddings__names = [n for member in members for n in member.get_names()]


class KeepsStackNames:
    """Mixin for a Flair model with an ``embeddings`` attribute (listed before the Flair base class): its saved
    state holds the stack members' names (``embedding_names``), and loading restores them."""

    def _get_state_dict(self):
        return {**super()._get_state_dict(), "embedding_names": stack_names(self.embeddings)}

    @classmethod
    def _init_model_with_state_dict(cls, state, **kwargs):
        model = super()._init_model_with_state_dict(state, **kwargs)
        restore_stack_names(model.embeddings, state.get("embedding_names"))
        return model
