"""Teacher targets read from their cache file piece by piece, so training memory does not grow with the cache.

A packed target file (``packed_writer``) is a safetensors file: an 8-byte header length, a JSON header (names,
dtypes, shapes, byte ranges, metadata) and the tensors' bytes. ``FileTensors`` reads rows of those tensors with
``os.pread`` at the offsets the header gives: no memory mapping (whose touched pages would count towards the
process's memory and whose file, damaged in place, would crash it) and no whole-file read. ``cache.PackedEntries``
over such a file holds the sentence keys and kinds (18 bytes a sentence) and reads a piece's layout row and data
when the piece is asked for. The checksum over every tensor is still verified when
the file is opened, in chunks of ``CHUNK_BYTES``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import torch

__all__ = ["FileTensors", "CHUNK_BYTES", "DTYPES"]

CHUNK_BYTES = 8 << 20
DTYPES = {"U8": torch.uint8, "I8": torch.int8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
           "F16": torch.float16, "F32": torch.float32, "F64": torch.float64}


class FileTensors:
    """Row slices of the tensors of one safetensors file, read on demand."""

    def __init__(self, path: Path, keep_open: bool = True):
        """`keep_open` False: the file is opened for each read and closed again, so that a merge over
        thousands of shard files holds no descriptor between reads (the process limit is often 1,024)."""
        self.path = Path(path)
        self.size = self.path.stat().st_size
        self._fd = os.open(self.path, os.O_RDONLY)
        try:
            header_size = int.from_bytes(self._read(8, 0), "little")
            header = json.loads(self._read(header_size, 8))
        except Exception:
            self.close()
            raise
        if not keep_open:
            self.close()
        self.metadata: Dict[str, str] = header.pop("__metadata__", None) or {}
        self.base = 8 + header_size
        self.info: Dict[str, Tuple[torch.dtype, List[int], int, int]] = {}
        for name, entry in header.items():
            if entry["dtype"] not in DTYPES:
                raise ValueError(f"tensor {name!r} has unsupported dtype {entry['dtype']}")
            start, end = entry["data_offsets"]
            dtype, shape = DTYPES[entry["dtype"]], list(entry["shape"])
            if end - start != math.prod(shape) * dtype.itemsize or self.base + end > self.size:
                raise ValueError(f"tensor {name!r} does not fit the file (truncated?)")
            self.info[name] = (dtype, shape, start, end)

    def _read(self, n: int, offset: int) -> bytes:
        if self._fd >= 0:
            data = os.pread(self._fd, n, offset)
        else:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                data = os.pread(fd, n, offset)
            finally:
                os.close(fd)
        if len(data) != n:
            raise ValueError(f"{self.path} is truncated")
        return data

    def rows(self, name: str, start: int, stop: int) -> torch.Tensor:
        """``tensor[start:stop]`` along the first dimension (elements of a 1-d tensor)."""
        dtype, shape, begin, _ = self.info[name]
        row = math.prod(shape[1:]) * dtype.itemsize
        count = max(stop - start, 0)
        if count == 0:
            return torch.zeros((0, *shape[1:]), dtype=dtype)
        data = bytearray(self._read(count * row, self.base + begin + start * row))
        return torch.frombuffer(data, dtype=dtype).reshape(count, *shape[1:])

    def whole(self, name: str) -> torch.Tensor:
        return self.rows(name, 0, self.info[name][1][0] if self.info[name][1] else 1)

    def parts(self) -> Iterator[Tuple[str, torch.dtype, List[int], Iterator[bytes]]]:
        """Every tensor as ``(name, dtype, shape, its bytes in chunks of CHUNK_BYTES)``: what
        ``cache._checksum`` hashes, read without holding the file."""
        for name, (dtype, shape, begin, end) in self.info.items():
            yield name, dtype, shape, self._chunks(begin, end)

    def _chunks(self, begin: int, end: int) -> Iterator[bytes]:
        for offset in range(begin, end, CHUNK_BYTES):
            yield self._read(min(CHUNK_BYTES, end - offset), self.base + offset)

    def close(self):
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutdown)
            pass
