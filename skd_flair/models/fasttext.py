"""fastText vectors with subword (character n-gram) vectors, as a Flair token embedding.

fastText: why our own class and not ``flair.embeddings.FastTextEmbeddings``.
Flair's class is deprecated since 0.14 and announced for removal in 0.16; a model saved with it would stop
loading on that upgrade because its registered class name disappears. It also ignores its ``name`` argument
(the name is always the file path, after loading a temporary path), so the teacher/student name rule cannot be
kept with it, and it pickles the whole gensim object into the model and looks vectors up one token at a time.
``FastTextSubwordEmbeddings`` is a small ``@register_embeddings`` ``TokenEmbeddings``: the in-vocabulary
vectors and the n-gram bucket matrix are buffers, so they are stored inside a saved Flair model (through the
model's ``state_dict``) and survive without the source file; out-of-vocabulary words get the mean of their
hashed n-gram vectors exactly as gensim's ``FastTextKeyedVectors.get_vector`` computes it (gensim's own hash
function is used). The module must be imported before such a model is loaded (``import skd_flair.models``),
as for any custom Flair embedding.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import flair
import numpy as np
import torch
import torch.nn.functional as F
from flair.data import Sentence
from flair.embeddings import TokenEmbeddings
from flair.embeddings.base import register_embeddings

from .cpu_table import CpuTable

__all__ = ["FastTextSubwordEmbeddings", "load_fasttext_vectors"]




_FT_HASHES = None


def _ngram_hashes(word: str, min_n: int, max_n: int, bucket: int) -> List[int]:
    global _FT_HASHES
    if _FT_HASHES is None:
        from gensim.models.fasttext import ft_ngram_hashes

        _FT_HASHES = ft_ngram_hashes
    return _FT_HASHES(word, min_n, max_n, bucket)


@register_embeddings
class FastTextSubwordEmbeddings(CpuTable, TokenEmbeddings):
    """Static fastText vectors with subword (character n-gram) vectors for out-of-vocabulary words.

    In-vocabulary words get their fastText vector; any other word gets the mean of its hashed n-gram vectors
    (gensim's ``FastTextKeyedVectors.get_vector``), or zeros when it has no n-gram. Both matrices are buffers,
    so they are part of the ``state_dict`` of a model that holds these embeddings and are saved inside it.
    Build one with :meth:`from_gensim` or :meth:`from_file`.
    """

    def __init__(
        self,
        vocab: Dict[str, int],
        embedding_length: int,
        bucket: int,
        min_n: int,
        max_n: int,
        name: str = "fasttext",
        field: Optional[str] = None,
        force_cpu: bool = True,
        vectors: Optional[np.ndarray] = None,
        ngram_vectors: Optional[np.ndarray] = None,
    ) -> None:
        self.name = name
        self.static_embeddings = True
        super().__init__()
        self.vocab: Dict[str, int] = dict(vocab)
        self.field = field
        self.force_cpu = force_cpu
        self.bucket, self.min_n, self.max_n = int(bucket), int(min_n), int(max_n)
        self.__embedding_length = int(embedding_length)
        dim = self.__embedding_length
        self.register_buffer("vectors", self._matrix(vectors, (len(self.vocab), dim), "vectors"))
        self.register_buffer("ngram_vectors", self._matrix(ngram_vectors, (self.bucket, dim), "ngram_vectors"))
        self._lookup_cache: Dict[str, Tuple[int, Tuple[int, ...]]] = {}
        self.to(flair.device)
        self.eval()

    @staticmethod
    def _matrix(values: Optional[np.ndarray], shape: Tuple[int, int], what: str) -> torch.Tensor:
        if values is None:
            return torch.zeros(shape, dtype=torch.float32)
        tensor = torch.tensor(np.ascontiguousarray(values, dtype=np.float32))
        if tuple(tensor.shape) != shape:
            raise ValueError(f"fastText {what} have shape {tuple(tensor.shape)}, expected {shape}")
        return tensor

    @classmethod
    def from_gensim(cls, keyed_vectors, name: str = "fasttext", field: Optional[str] = None,
                    force_cpu: bool = True) -> "FastTextSubwordEmbeddings":
        """From a gensim ``FastTextKeyedVectors`` (``model.wv``) or a full gensim ``FastText`` model."""
        kv = getattr(keyed_vectors, "wv", keyed_vectors)
        if not hasattr(kv, "vectors_ngrams"):
            raise ValueError(f"{type(kv).__name__} has no subword n-gram vectors; it is not a fastText model")
        dim = int(kv.vector_size)
        bucket = int(kv.bucket)
        ngrams = kv.vectors_ngrams if bucket else np.zeros((0, dim), dtype=np.float32)
        return cls(vocab=dict(kv.key_to_index), embedding_length=dim, bucket=bucket, min_n=kv.min_n,
                   max_n=kv.max_n, name=name, field=field, force_cpu=force_cpu, vectors=kv.vectors,
                   ngram_vectors=ngrams)

    @classmethod
    def from_file(cls, path: Union[str, Path], name: Optional[str] = None, field: Optional[str] = None,
                  force_cpu: bool = True) -> "FastTextSubwordEmbeddings":
        """From a facebook ``.bin`` or a gensim-saved ``FastTextKeyedVectors`` / ``FastText`` model file."""
        return cls.from_gensim(load_fasttext_vectors(path), name=name or str(path), field=field,
                               force_cpu=force_cpu)

    @property
    def embedding_length(self) -> int:
        return self.__embedding_length

    def _lookup(self, word: str) -> Tuple[int, Tuple[int, ...]]:
        hit = self._lookup_cache.get(word)
        if hit is None:
            index = self.vocab.get(word, -1)
            hashes: Tuple[int, ...] = ()
            if index < 0 and self.bucket > 0:
                hashes = tuple(_ngram_hashes(word, self.min_n, self.max_n, self.bucket))
            hit = (index, hashes)
            if len(self._lookup_cache) < 200_000:
                self._lookup_cache[word] = hit
        return hit

    def _add_embeddings_internal(self, sentences: List[Sentence]) -> List[Sentence]:
        tokens = [token for sentence in sentences for token in sentence.tokens]
        if not tokens:
            return sentences
        device = self.vectors.device
        out = torch.zeros(len(tokens), self.embedding_length, device=device)
        known_pos, known_idx, oov_pos, flat, offsets = [], [], [], [], []
        for pos, token in enumerate(tokens):
            word = token.text if self.field is None else token.get_label(self.field).value
            index, hashes = self._lookup(word)
            if index >= 0:
                known_pos.append(pos)
                known_idx.append(index)
            else:
                oov_pos.append(pos)
                offsets.append(len(flat))
                flat.extend(hashes)
        if known_pos:
            out[torch.tensor(known_pos, device=device)] = self.vectors[torch.tensor(known_idx, device=device)]
        if flat:
            bags = F.embedding_bag(torch.tensor(flat, device=device), self.ngram_vectors,
                                   torch.tensor(offsets, device=device), mode="mean")
            out[torch.tensor(oov_pos, device=device)] = bags
        out = out.to(flair.device)
        for token, vector in zip(tokens, out):
            token.set_embedding(self.name, vector)
        return sentences

    def extra_repr(self) -> str:
        return (f"vocab={len(self.vocab)}, dim={self.embedding_length}, bucket={self.bucket}, "
                f"n={self.min_n}..{self.max_n}")

    def to_params(self) -> Dict[str, Any]:
        return {"vocab": self.vocab, "embedding_length": self.embedding_length, "bucket": self.bucket,
                "min_n": self.min_n, "max_n": self.max_n, "name": self.name, "field": self.field,
                "force_cpu": self.force_cpu}

    @classmethod
    def from_params(cls, params: Dict[str, Any]) -> "FastTextSubwordEmbeddings":
        return cls(**params)


def load_fasttext_vectors(path: Union[str, Path]):
    """gensim ``FastTextKeyedVectors`` from a facebook ``.bin`` or a gensim-saved file; ValueError if the file
    holds no subword vectors."""
    path = Path(path)
    if path.suffix.lower() == ".bin":
        from gensim.models.fasttext import load_facebook_vectors

        try:
            return load_facebook_vectors(str(path))
        except Exception as err:  # gensim raises NotImplementedError/struct.error/... on non-fastText binaries
            raise ValueError(f"'{path}' is not a facebook fastText binary ({type(err).__name__}: {err}); "
                             f"a word2vec binary has no subword vectors: use type 'word'") from err
    if path.suffix.lower() in (".txt", ".vec"):
        raise ValueError(f"'{path}' is a text vector file, which holds no subword n-gram vectors; use type 'word'"
                         f" for it, or give the gensim FastTextKeyedVectors (.kv) or facebook .bin file")
    from gensim.utils import SaveLoad

    try:
        obj = SaveLoad.load(str(path))
    except Exception as err:
        raise ValueError(f"'{path}' is not a gensim-saved file ({type(err).__name__}: {err})") from err
    kv = getattr(obj, "wv", obj)
    if not hasattr(kv, "vectors_ngrams"):
        raise ValueError(f"'{path}' holds a {type(kv).__name__} without subword n-gram vectors; use type 'word'")
    return kv
