"""Flair's character embeddings, computed for a whole batch in one LSTM call.

Flair's ``CharacterEmbeddings`` runs its character LSTM once per sentence; on CPU a BiLSTM-CRF student spends
most of a training step in those small calls and their backward pass (about 320 LSTM calls per 32-sentence
batch on CoNLL-2003). ``BatchedCharacterEmbeddings`` has the same parameters, state-dict keys and output (the
bidirectional output at a word's last character, as Flair takes it) but encodes each distinct word of the
batch once, in one packed call: identical words get identical vectors in Flair too, and their gradients add up
the same way.
"""
from __future__ import annotations

from typing import Dict, List

import flair
import torch
from flair.data import Sentence
from flair.embeddings import CharacterEmbeddings
from flair.embeddings.base import register_embeddings
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@register_embeddings
class BatchedCharacterEmbeddings(CharacterEmbeddings):
    """``CharacterEmbeddings`` with one character-LSTM call per batch of sentences."""

    def _add_embeddings_internal(self, sentences: List[Sentence]):
        index: Dict[str, int] = {}
        words: List[List[int]] = []
        for sentence in sentences:
            for token in sentence.tokens:
                if token.text not in index:
                    index[token.text] = len(words)
                    # an empty token text gets one unknown character, where Flair's loop would fail
                    words.append([self.char_dictionary.get_idx_for_item(c) for c in token.text] or [0])
        if not words:
            return
        lengths = torch.tensor([len(w) for w in words], dtype=torch.long)
        chars = torch.zeros((len(words), int(lengths.max())), dtype=torch.long)
        for i, word in enumerate(words):
            chars[i, :len(word)] = torch.tensor(word, dtype=torch.long)
        embedded = self.char_embedding(chars.to(flair.device))
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        output, _ = self.char_rnn(packed)
        output, _ = pad_packed_sequence(output, batch_first=True)
        vectors = output[torch.arange(len(words)), lengths.to(output.device) - 1]
        for sentence in sentences:
            for token in sentence.tokens:
                token.set_embedding(self.name, vectors[index[token.text]])
