"""The one eval-mode loop of every model: eval mode and no graph for the block, mini-batches of the non-empty
sentences, embeddings stored or dropped after each batch, and the model's train/eval state put back."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, List, Union

import torch
from flair.data import Sentence
from flair.datasets import DataLoader, FlairDatapointDataset
from flair.training_utils import store_embeddings
from tqdm import tqdm

__all__ = ["eval_mode", "inference_batches"]


@contextmanager
def eval_mode(model: torch.nn.Module):
    """Eval mode and ``no_grad`` inside the block; the model leaves it in the mode it came in."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def inference_batches(data: Union[Sentence, List[Sentence], "torch.utils.data.Dataset"], mini_batch_size: int,
                      verbose: bool = False, embedding_storage_mode: str = "none", longest_first: bool = False,
                      desc: str = "Batch inference") -> Iterator[List[Sentence]]:
    """Mini-batches of the non-empty sentences of `data` (one sentence, a list, or a Flair dataset, which is
    not copied), longest first if asked; each batch's embeddings are stored or dropped (Flair's
    `embedding_storage_mode`) once the caller is done with it. Use inside `eval_mode`."""
    if isinstance(data, Sentence):
        data = [data]
    if isinstance(data, list):
        data = [s for s in data if len(s) > 0]
        if longest_first:
            data = sorted(data, key=len, reverse=True)
        data = FlairDatapointDataset(data)
    loader = DataLoader(data, batch_size=mini_batch_size)
    for batch in tqdm(loader, desc=desc) if verbose else loader:
        batch = [s for s in batch if len(s) > 0]
        if batch:
            yield batch
            store_embeddings(batch, storage_mode=embedding_storage_mode)
