"""A transformer's input piece table as a static Flair token embedding: the transformer's vocabulary, read
without running its layers.

Why: a student's word table decides much of its F1 where no large pretrained vectors exist for its language
(the Dutch student on 100-d fastText vectors trained on 15,806 sentences trails one that also reads GloVe by
11 F1). A multilingual teacher's transformer brings a table learnt on far more text in every language it
covers: its input embedding matrix. Each word is split by the transformer's own tokenizer and gets the mean
(or the first) of its pieces' rows; nothing contextual is computed, so the student keeps its speed.

The table is a buffer kept in the transformer's stored precision (an fp16 checkpoint stays fp16 in the saved
student: exact, half the bytes) and the tokenizer travels inside the saved model as its JSON text
(``tokenizers.Tokenizer.from_str``), so a saved student loads without the transformer's folder and loading
runs no code of the tokenizer's. Import ``skd_flair.models`` before loading such a model, as for any custom
Flair embedding.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import flair
import torch
import torch.nn.functional as F
from flair.data import Sentence
from flair.embeddings import TokenEmbeddings
from flair.embeddings.base import register_embeddings

from .cpu_table import CpuTable

__all__ = ["PieceTableEmbeddings", "POOLINGS"]

POOLINGS = ("mean", "first")
_CACHE_WORDS = 200_000


def _tokenizer(tokenizer_json: str):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


@register_embeddings
class PieceTableEmbeddings(CpuTable, TokenEmbeddings):
    """Static word vectors pooled from a transformer's input piece embeddings (see the module docstring).

    Build one with :meth:`from_pretrained` (a local folder or a hub id). A word the tokenizer turns into no
    piece gets zeros.
    """

    def __init__(
        self,
        tokenizer_json: str,
        embedding_length: int,
        rows: int,
        pooling: str = "mean",
        name: str = "pieces",
        field: Optional[str] = None,
        force_cpu: bool = True,
        dtype: str = "float32",
        vectors: Optional[torch.Tensor] = None,
    ) -> None:
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype!r}")
        self.name = name
        self.static_embeddings = True
        super().__init__()
        self.tokenizer_json = tokenizer_json
        self._tokenizer = _tokenizer(tokenizer_json)
        self.pooling, self.field, self.force_cpu, self.dtype = pooling, field, force_cpu, dtype
        self.rows = int(rows)
        self.__embedding_length = int(embedding_length)
        shape = (self.rows, self.__embedding_length)
        table = torch.zeros(shape, dtype=getattr(torch, dtype)) if vectors is None else vectors.detach().to(
            dtype=getattr(torch, dtype), device="cpu").clone()
        if tuple(table.shape) != shape:
            raise ValueError(f"piece table has shape {tuple(table.shape)}, expected {shape}")
        self.register_buffer("vectors", table)
        self._pieces_cache: Dict[str, Tuple[int, ...]] = {}
        self.to(flair.device)
        self.eval()

    @classmethod
    def from_pretrained(cls, model: str, pooling: str = "mean", name: Optional[str] = None,
                        field: Optional[str] = None, force_cpu: bool = True) -> "PieceTableEmbeddings":
        """The input embedding matrix and the (fast) tokenizer of a transformers model: a local folder or a
        hub id."""
        from transformers import AutoConfig, AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        tokenizer = AutoTokenizer.from_pretrained(model)
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"'{model}' has no fast (Rust) tokenizer; a piece table needs its tokenizer.json")
        # the checkpoint's own precision, read before loading (the loaded config reports float32)
        declared = str(getattr(AutoConfig.from_pretrained(model), "dtype", None)).replace("torch.", "")
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "pooler weights newly initialised": no pooler is used here
        try:
            network = AutoModel.from_pretrained(model)
        finally:
            hf_logging.set_verbosity(verbosity)
        matrix = network.get_input_embeddings().weight.detach()
        stored = declared if declared in ("float16", "bfloat16") else "float32"
        largest = max(tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True).values())
        if largest >= matrix.shape[0]:
            raise ValueError(f"'{model}': the tokenizer has piece id {largest}, the embedding matrix only "
                             f"{matrix.shape[0]} rows")
        return cls(tokenizer.backend_tokenizer.to_str(), embedding_length=matrix.shape[1], rows=matrix.shape[0],
                   pooling=pooling, name=name or f"pieces-{model}", field=field, force_cpu=force_cpu, dtype=stored,
                   vectors=matrix)

    @property
    def embedding_length(self) -> int:
        return self.__embedding_length

    def pieces(self, word: str) -> Tuple[int, ...]:
        """The piece ids of `word` (as the first word of a text: the tokenizer's word-start marker included)."""
        hit = self._pieces_cache.get(word)
        if hit is None:
            hit = tuple(self._tokenizer.encode(word, add_special_tokens=False).ids)
            if self.pooling == "first":
                hit = hit[:1]
            if len(self._pieces_cache) < _CACHE_WORDS:
                self._pieces_cache[word] = hit
        return hit

    def _add_embeddings_internal(self, sentences: List[Sentence]) -> List[Sentence]:
        tokens = [token for sentence in sentences for token in sentence.tokens]
        if not tokens:
            return sentences
        flat: List[int] = []
        offsets: List[int] = []
        for token in tokens:
            offsets.append(len(flat))
            flat.extend(self.pieces(token.text if self.field is None else token.get_label(self.field).value))
        if flat:
            # only the rows used are cast to float32: the table itself stays in its stored precision
            used, index = torch.unique(torch.tensor(flat, dtype=torch.long), return_inverse=True)
            rows = self.vectors[used.to(self.vectors.device)].float()
            out = F.embedding_bag(index.to(rows.device), rows, torch.tensor(offsets, device=rows.device), mode="mean")
        else:
            out = torch.zeros(len(tokens), self.embedding_length)
        out = out.to(flair.device)
        for token, vector in zip(tokens, out):
            token.set_embedding(self.name, vector)
        return sentences

    def extra_repr(self) -> str:
        return f"rows={self.rows}, dim={self.embedding_length}, pooling={self.pooling}, dtype={self.dtype}"

    def to_params(self) -> Dict[str, Any]:
        return {"tokenizer_json": self.tokenizer_json, "embedding_length": self.embedding_length, "rows": self.rows,
                "pooling": self.pooling, "name": self.name, "field": self.field, "force_cpu": self.force_cpu,
                "dtype": self.dtype}

    @classmethod
    def from_params(cls, params: Dict[str, Any]) -> "PieceTableEmbeddings":
        return cls(**params)
