"""Training batches of sentences of similar length (``trainer.length_buckets: true``).

Flair pads every batch to its longest sentence, and the BiLSTM's forward and backward passes run over the
padding too; a shuffled batch of 32 sentences is mostly padding when lengths vary from 3 to 60 tokens. This
sampler shuffles the training set, sorts each window of `window` batches by length, cuts it into batches and
shuffles the batches: every epoch sees every sentence once, in a new random order of batches, each batch of
near-equal lengths. Only the last batch of the epoch can be short (the DataLoader cuts the order it is given
into consecutive batches, so every other batch must be exactly full).
"""
from __future__ import annotations

from typing import Iterator, List

import torch
from flair.samplers import FlairSampler

__all__ = ["LengthBucketSampler", "padding_fraction"]


class LengthBucketSampler(FlairSampler):
    def __init__(self, batch_size: int, window: int = 50):
        if batch_size < 1 or window < 1:
            raise ValueError(f"batch_size and window must be >= 1, got {batch_size} and {window}")
        self.batch_size, self.window = int(batch_size), int(window)
        self.lengths: List[int] = []

    def set_dataset(self, data_source):
        super().set_dataset(data_source)
        self.lengths = [len(data_source[i]) for i in range(len(data_source))]

    def __getstate__(self):
        # Flair writes the trainer's arguments, this sampler among them, into every saved model's card: pickled
        # with its dataset, each model file would carry the whole training set (and take seconds to write)
        return {"batch_size": self.batch_size, "window": self.window, "lengths": []}

    def batches(self) -> List[List[int]]:
        """This epoch's batches of dataset indices (a fresh random draw on every call)."""
        n, size = len(self.lengths), self.batch_size
        order = torch.randperm(n).tolist()
        chunk = size * self.window  # a multiple of the batch size: only the epoch's last batch can be short
        full, last = [], []
        for start in range(0, n, chunk):
            block = sorted(order[start:start + chunk], key=self.lengths.__getitem__)
            for k in range(0, len(block), size):
                (full if len(block) - k >= size else last).append(block[k:k + size])
        return [full[i] for i in torch.randperm(len(full)).tolist()] + last

    def __iter__(self) -> Iterator[int]:
        return iter([i for batch in self.batches() for i in batch])


def padding_fraction(lengths: List[int], batches: List[List[int]]) -> float:
    """The share of padded positions when each batch is padded to its longest sentence."""
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1.0 - sum(lengths[i] for b in batches for i in b) / padded if padded else 0.0
