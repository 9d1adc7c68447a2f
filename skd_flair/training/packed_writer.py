"""Writing a packed target file (the layout is described in ``cache``) without holding its contents in memory.

The merge of an annotation's shards used to concatenate every piece into a few flat tensors in memory and hand
them to ``safetensors.save_file``: about three times the file's size at once. Here each piece's data is appended
to one temporary file per stream as the pieces are read (shards read lazily give one piece at a time), and the
safetensors file is then assembled by copying those files after its header. The header holds a checksum of the
data, which is only known afterwards: it is written with a placeholder of the same length and patched once the
finished file has been read back in chunks. Peak memory is the per-sentence layout table (64 bytes per field and
sentence), not the targets. The file is byte for byte what the safetensors library reads (contiguous tensors,
widest dtypes first, header padded with spaces to 8 bytes).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Tuple

import torch

from . import atomic_path
from .lazy_targets import CHUNK_BYTES, DTYPES, FileTensors

__all__ = ["STREAMS", "MAX_DIMS", "checksum", "write_packed"]

STREAMS = {"sparse_index": torch.int32, "sparse_value": torch.float32, "ints": torch.int32, "floats": torch.float32}
MAX_DIMS = 4
_NAMES = {dtype: code for code, dtype in DTYPES.items()}  # torch dtype -> safetensors' name for it
_PLACEHOLDER = "0" * 64  # the length of a SHA-256 in hex


def checksum(parts: Iterable[Tuple[str, torch.dtype, List[int], Iterable[bytes]]]) -> str:
    """SHA-256 over a packed file's tensors, given as ``(name, dtype, shape, byte chunks)`` (``parts()`` of
    ``InMemoryTensors`` or ``FileTensors``), in name order: the checksum the file's metadata holds."""
    h = hashlib.sha256()
    for name, dtype, shape, chunks in sorted(parts, key=lambda part: part[0]):
        h.update(f"{name}:{dtype}:{list(shape)}".encode())
        for chunk in chunks:
            h.update(chunk)
    return h.hexdigest()


def _bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def _append(piece: dict, streams, sizes: Dict[str, int]) -> Tuple[str, Dict[str, List[int]]]:
    """Append a piece's fields to the stream files; (its kind, its layout row per field)."""
    row = {}
    for field, value in piece.items():
        if field == "kind":
            continue
        if isinstance(value, dict):  # sparse: shape, index, value
            shape, n, code, stream = list(value["shape"]), value["index"].numel(), 0, "sparse_index"
            streams["sparse_value"].write(_bytes(value["value"].to(torch.float32)))
            sizes["sparse_value"] += n
            data = value["index"].to(torch.int32)
        else:
            shape, n = list(value.shape), value.numel()
            code = 1 if not value.is_floating_point() else 2
            stream = "ints" if code == 1 else "floats"
            data = value.to(STREAMS[stream])
        if len(shape) > MAX_DIMS:
            raise ValueError(f"cannot store a {len(shape)}-dimensional target field {field!r}")
        row[field] = [code, sizes[stream], n, len(shape), *shape]
        streams[stream].write(_bytes(data))
        sizes[stream] += n
    return piece["kind"], row


def write_packed(entries: Mapping[str, dict], path: Path, metadata: Callable[[List[str], List[str]], Dict[str, str]]):
    """Write `entries` (sentence key -> stored piece) to `path` atomically; ``metadata(fields, kinds)`` gives the
    file's metadata, whose ``"checksum"`` this fills in."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(entries)
    rows: List[Dict[str, List[int]]] = []
    piece_kinds: List[str] = []
    sizes = dict.fromkeys(STREAMS, 0)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as scratch:
        streams = {name: open(Path(scratch) / name, "wb") for name in STREAMS}
        try:
            for key in keys:
                kind, row = _append(entries[key], streams, sizes)  # the piece is released on return
                piece_kinds.append(kind)
                rows.append(row)
        finally:
            for handle in streams.values():
                handle.close()
        fields = sorted({f for row in rows for f in row})
        kind_names = sorted(set(piece_kinds))
        kind_index = {k: i for i, k in enumerate(kind_names)}
        layout = torch.full((len(keys), len(fields), 4 + MAX_DIMS), -1, dtype=torch.int64)
        for e, row in enumerate(rows):
            for f, field in enumerate(fields):
                if field in row:
                    layout[e, f, :len(row[field])] = torch.tensor(row[field], dtype=torch.int64)
        small = {"keys": torch.tensor([list(bytes.fromhex(k)) for k in keys], dtype=torch.uint8).reshape(len(keys), 16),
                 "kinds": torch.tensor([kind_index[k] for k in piece_kinds], dtype=torch.int16),
                 "layout": layout}
        tensors = {name: (t.dtype, list(t.shape)) for name, t in small.items()}
        tensors.update({name: (dtype, [sizes[name]]) for name, dtype in STREAMS.items()})
        # widest dtypes first, as safetensors lays them out: every tensor starts aligned to its item size
        order = sorted(tensors, key=lambda name: (-tensors[name][0].itemsize, name))
        header, offset = {}, 0
        for name in order:
            dtype, shape = tensors[name]
            end = offset + int(torch.Size(shape).numel()) * dtype.itemsize
            header[name] = {"dtype": _NAMES[dtype], "shape": shape, "data_offsets": [offset, end]}
            offset = end
        meta = dict(metadata(fields, kind_names))
        meta["checksum"] = _PLACEHOLDER

        def encoded() -> bytes:
            text = json.dumps({"__metadata__": meta, **header}, separators=(",", ":")).encode()
            return text + b" " * (-len(text) % 8)

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as out:
                head = encoded()
                out.write(len(head).to_bytes(8, "little") + head)
                for name in order:
                    if name in small:
                        out.write(_bytes(small[name]))
                    else:
                        with open(Path(scratch) / name, "rb") as source:
                            shutil.copyfileobj(source, out, CHUNK_BYTES)
            reader = FileTensors(tmp)
            try:
                meta["checksum"] = checksum(reader.parts())
            finally:
                reader.close()
            patched = encoded()
            if len(patched) != len(head):
                raise AssertionError("the checksum changed the header's length")
            with open(tmp, "r+b") as out:
                out.seek(8)
                out.write(patched)
