"""Teacher targets on disk: compact, checksummed, written atomically, resumable.

Entries are keyed per sentence (a hash of its tokens), so what a sentence gets never depends on how the
corpus was batched, shuffled or split across processes. A target space (teacher weights, objective with its
temperature and map, student labels, threshold) has one directory; a file in it holds every entry of one
corpus. A new corpus takes the entries its sentences already have in any file of the space
(:meth:`TargetCache.reuse`) and annotates only the rest. Files are written to a
temporary name and renamed; a truncated or corrupted file fails its checksum and is recomputed, never
used. Long annotations are flushed in shards, so an interrupted run resumes where it stopped.

Storage: a probability table keeps its entries above `threshold` (default 1e-7) as float32 values with
int32 flat indices; everything below is dropped. The error per token is therefore at most
``threshold * L`` of probability mass (under 2e-6 for 19 NER tags), and a distribution of a confident
teacher shrinks to a few entries per token.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from safetensors.torch import load as safetensors_load

from ..distill.targets import target_type
from .lazy_targets import FileTensors
from .packed_writer import checksum as _checksum
from .packed_writer import write_packed

log = logging.getLogger("skd_flair")

FORMAT = 2  # 1: pickled dicts (torch.save); 2: packed safetensors
# a complete target file larger than this is read piece by piece (lazy_targets) instead of held in memory
LAZY_BYTES = int(os.environ.get("SKD_FLAIR_LAZY_TARGETS_MB", "256")) << 20
__all__ = ["TargetCache", "PackedEntries", "MergedEntries", "compress", "decompress", "sentence_key",
           "fingerprint_model", "digest"]


def digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def sentence_key(sentence) -> str:
    """Hash of a sentence's tokens: its identity for caching (batch and order independent)."""
    text = "\x1f".join(token.text for token in sentence)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def fingerprint_model(model: torch.nn.Module) -> str:
    """Hash of a model's class and every weight: a changed teacher gets a new cache."""
    h = hashlib.sha256(type(model).__name__.encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if tensor.numel() else b"")
    for name in getattr(model, "label_names", []) or []:
        h.update(name.encode())
    config = getattr(model, "teacher_config", None)  # inference settings that change targets, not weights
    if callable(config):
        h.update(json.dumps(config(), sort_keys=True, default=str).encode())
    return h.hexdigest()


def _sparse(x: torch.Tensor, threshold: float) -> dict:
    x = x.detach().float().cpu()
    flat = x.reshape(-1)
    keep = (flat > threshold).nonzero().squeeze(1)
    return {"shape": list(x.shape), "index": keep.to(torch.int32), "value": flat[keep]}


def _dense(s: dict) -> torch.Tensor:
    out = torch.zeros(s["shape"], dtype=torch.float32).reshape(-1)
    out[s["index"].long()] = s["value"]
    return out.reshape(s["shape"])


def compress(piece: dict, threshold: float = 1e-7) -> dict:
    """A per-sentence target piece (see distill.batching) in its stored form (as its type's layout says)."""
    layout = target_type(piece["kind"]).layout
    out = {"kind": piece["kind"]}
    for key, field in layout.items():
        value = piece[key]
        if field.store == "sparse":
            out[key] = _sparse(value, threshold)
        elif field.store == "index":
            out[key] = value.detach().cpu().to(torch.int32)
        else:
            out[key] = value.detach().float().cpu()
    return out


def decompress(stored: dict) -> dict:
    layout = target_type(stored["kind"]).layout
    out = {"kind": stored["kind"]}
    for key, field in layout.items():
        value = stored[key]
        out[key] = _dense(value) if field.store == "sparse" else value.long() if field.store == "index" else value
    return out


# ------------------------------------------------------------------------------------------------ storage
# One file holds many sentences' pieces packed into a few flat tensors (safetensors: no code runs on load,
# no per-tensor pickling cost), plus a layout table saying where each piece's fields lie:
#   keys    uint8 [E, 16]   the sentence keys (32 hex digits)
#   kinds   int16 [E]       index into the metadata's "kinds"
#   layout  int64 [E, F, 8] per field: code (-1 absent, 0 sparse, 1 int32, 2 float32), offset, length,
#                           number of dimensions, up to 4 dimensions
#   sparse_index int32, sparse_value float32, ints int32, floats float32: the concatenated data
# The metadata holds the cache key (a file copied under another key is refused), the field and kind names,
# the other stored items as JSON, and a SHA-256 over every tensor (a flipped byte is caught). Files are written
# piece by piece (``packed_writer``), never assembled in memory.
SUFFIX = ".safetensors"


class InMemoryTensors:
    """The tensors of a packed file held in memory, with the row access ``FileTensors`` gives for a file."""

    def __init__(self, tensors: Dict[str, torch.Tensor]):
        self.tensors = tensors

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        return self.tensors[name][start:stop]

    def whole(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def parts(self) -> Iterator[Tuple[str, torch.dtype, List[int], Iterable[bytes]]]:
        for name, t in self.tensors.items():
            t = t.contiguous()
            yield name, t.dtype, list(t.shape), [t.view(-1).view(torch.uint8).numpy().data] if t.numel() else []


class PackedEntries(Mapping):
    """Read-only ``{sentence key: stored piece}`` over one packed file, in memory (``InMemoryTensors``: a
    piece's tensors are views into the file's flat tensors) or read from it when asked for (``FileTensors``,
    see ``lazy_targets``); only the sentence keys and kinds are indexed up front."""

    def __init__(self, tensors, fields, kinds):
        self.tensors, self.fields, self.kinds = tensors, list(fields), list(kinds)
        self.index = {bytes(row).hex(): i for i, row in enumerate(tensors.whole("keys").numpy())}
        self._kinds = tensors.whole("kinds")

    def __len__(self):
        return len(self.index)

    def __iter__(self) -> Iterator[str]:
        return iter(self.index)

    def __contains__(self, key) -> bool:
        return key in self.index

    def __getitem__(self, key: str) -> dict:
        e = self.index[key]
        t = self.tensors
        piece = {"kind": self.kinds[int(self._kinds[e])]}
        for f, row in enumerate(t.rows("layout", e, e + 1)[0].tolist()):
            code, offset, n, ndim = row[:4]
            if code < 0:
                continue
            shape = row[4:4 + ndim]
            if code == 0:
                piece[self.fields[f]] = {"shape": shape, "index": t.rows("sparse_index", offset, offset + n),
                                         "value": t.rows("sparse_value", offset, offset + n)}
            else:
                piece[self.fields[f]] = t.rows("ints" if code == 1 else "floats", offset, offset + n).reshape(shape)
        return piece


class MergedEntries(Mapping):
    """Several entry mappings read as one (the shards of an interrupted annotation, then the new pieces)."""

    def __init__(self, parts: Iterable[Mapping[str, dict]] = ()):
        self.parts = [p for p in parts if len(p)]

    def __len__(self):
        return len(set().union(*self.parts)) if self.parts else 0

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for part in self.parts:
            for key in part:
                if key not in seen:
                    seen.add(key)
                    yield key

    def __contains__(self, key) -> bool:
        return any(key in part for part in self.parts)

    def __getitem__(self, key: str) -> dict:
        for part in self.parts:
            if key in part:
                return part[key]
        raise KeyError(key)


def _save_packed(entries: Mapping[str, dict], path: Path, key: str, extra: Optional[dict] = None):
    write_packed(entries, path, lambda fields, kinds: {
        "format": str(FORMAT), "key": key, "fields": json.dumps(fields), "kinds": json.dumps(kinds),
        "extra": json.dumps(extra or {}, default=str)})


def _load_packed(path: Path, key: str, lazy: bool = False, keep_open: bool = True):
    """(entries, extra) stored at ``path`` for cache key ``key``, or None (with a warning) when the file is
    truncated, corrupted, not ours or made for another key. `lazy`: entries read piece by piece from the file
    (``lazy_targets``) instead of the whole file held in memory, through one open descriptor (`keep_open`) or
    opening the file for each read."""
    try:
        if lazy:
            tensors = FileTensors(path, keep_open=keep_open)
            metadata = tensors.metadata
        else:
            # read into memory rather than memory-map: a file damaged in place under a mapping would crash
            data = path.read_bytes()
            size = int.from_bytes(data[:8], "little")
            metadata = json.loads(data[8:8 + size]).get("__metadata__") or {}
            tensors = InMemoryTensors(safetensors_load(data))
            del data
        if metadata.get("format") != str(FORMAT):
            raise ValueError(f"unknown format {metadata.get('format')!r}")
        if metadata.get("key") != key:
            raise ValueError("it was made for another cache key")
        if _checksum(tensors.parts()) != metadata.get("checksum"):
            raise ValueError("checksum mismatch")
        entries = PackedEntries(tensors, json.loads(metadata["fields"]), json.loads(metadata["kinds"]))
        return entries, json.loads(metadata["extra"])
    except Exception as error:  # any damage means: recompute
        log.warning(f"teacher cache {path} is unreadable ({error}); it will be recomputed")
        return None


class TargetCache:
    """The files of one cache key under `directory`: ``<key>.safetensors`` when complete, ``<key>.partial/``
    while an annotation is under way."""

    def __init__(self, directory, key: str):
        self.directory = Path(directory)
        self.key = key
        self.path = self.directory / f"{key}{SUFFIX}"
        self.partial = self.directory / f"{key}.partial"

    def load(self, lazy: Optional[bool] = None) -> Optional[dict]:
        """``{"entries": ..., **extra}`` of the complete file, or None. `lazy` (None: when the file is over
        ``LAZY_BYTES``) reads pieces from the file when asked for instead of holding the file in memory."""
        if not self.path.exists():
            return None
        if lazy is None:
            lazy = self.path.stat().st_size > LAZY_BYTES
        stored = _load_packed(self.path, self.key, lazy=lazy)
        if stored is None:
            self.path.unlink(missing_ok=True)
            return None
        entries, extra = stored
        return {**extra, "entries": entries}

    def save(self, stored: dict):
        """Write ``stored["entries"]`` (a mapping of pieces) and its other JSON-able items; drop the shards."""
        extra = {k: v for k, v in stored.items() if k != "entries"}
        _save_packed(stored["entries"], self.path, self.key, extra)
        self.clear_partial()

    def load_partial(self) -> MergedEntries:
        """The shards written so far, read from their files piece by piece (the merge holds one at a time)."""
        parts = []
        if self.partial.is_dir():
            for shard in sorted(self.partial.glob(f"shard-*{SUFFIX}")):
                part = _load_packed(shard, self.key, lazy=True, keep_open=False)  # no descriptor per shard
                if part is None:
                    shard.unlink(missing_ok=True)
                    continue
                parts.append(part[0])
        return MergedEntries(parts)

    def save_shard(self, entries: Mapping[str, dict], rank: int = 0):
        """Flush pieces of an annotation under way; each process (`rank`) numbers its own shards."""
        if not entries:
            return
        count = len(list(self.partial.glob(f"shard-r{rank}-*{SUFFIX}"))) if self.partial.is_dir() else 0
        _save_packed(entries, self.partial / f"shard-r{rank}-{count:06d}{SUFFIX}", self.key)

    def reuse(self, wanted: Iterable[str]) -> Dict[str, dict]:
        """Copies of the pieces of `wanted` sentence keys found in the other complete files of this directory
        (the same target space), newest file first; each file is read once and released."""
        wanted, found = set(wanted), {}
        if not self.directory.is_dir():
            return found
        files = [p for p in self.directory.glob(f"*{SUFFIX}") if p != self.path]
        for path in sorted(files, key=lambda p: p.stat().st_mtime, reverse=True):
            if not wanted:
                break
            stored = _load_packed(path, path.name[:-len(SUFFIX)], lazy=path.stat().st_size > LAZY_BYTES)
            if stored is None:
                path.unlink(missing_ok=True)
                continue
            entries = stored[0]
            for key in [k for k in wanted if k in entries]:
                found[key] = _copy_piece(entries[key])
                wanted.discard(key)
        return found

    def clear_partial(self):
        if self.partial.is_dir():
            for shard in self.partial.iterdir():
                shard.unlink()
            self.partial.rmdir()


def _copy_piece(piece: dict) -> dict:
    """A stored piece detached from the file it was read from (its tensors are views into the whole file)."""
    return {name: value if name == "kind" else
            ({**value, "index": value["index"].clone(), "value": value["value"].clone()} if isinstance(value, dict)
             else value.clone()) for name, value in piece.items()}


def corpus_digest(keys: Iterable[str]) -> str:
    return digest(sorted(set(keys)))
