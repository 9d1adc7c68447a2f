"""The packed target file is written piece by piece: it reads back the same through the safetensors library and
through the lazy reader, its checksum is right, and no piece is still held when the next one is read."""
import gc
import json
import weakref
from collections.abc import Mapping

import torch
from safetensors.torch import load_file

from skd_flair.training.cache import TargetCache, _load_packed, _save_packed, compress
from skd_flair.training.packed_writer import checksum
from skd_flair.training.lazy_targets import FileTensors

KEY = "ab" * 16


def pieces(n=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i in range(n):
        length = 1 + i % 4
        probs = torch.softmax(torch.randn(length, 5, generator=g) * 3, -1)
        pairs = torch.softmax(torch.randn(max(length - 1, 0), 5 * 5, generator=g), -1).reshape(-1, 5, 5)
        if i % 3 == 2:  # a different kind with an index field and a dense one
            piece = {"kind": "sequences", "tags": torch.randint(-1, 5, (2, length), generator=g),
                     "weights": torch.tensor([0.75, 0.25])}
        else:
            piece = compress({"kind": "chain", "unary": probs, "pairwise": pairs}, threshold=0.05)
        out[f"{i:032x}"] = piece
    return out


def same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        x, y = a[name], b[name]
        if isinstance(x, dict):
            assert list(x["shape"]) == list(y["shape"])
            assert torch.equal(x["index"].long(), y["index"].long()) and torch.equal(x["value"], y["value"])
        elif isinstance(x, str):
            assert x == y
        else:
            assert torch.equal(x.to(y.dtype), y)


def test_the_file_reads_back_the_same_both_ways(tmp_path):
    entries = pieces()
    path = tmp_path / "t.safetensors"
    _save_packed(entries, path, KEY, {"labels": ["a", "b"]})
    tensors = load_file(str(path))  # the safetensors library itself accepts the layout
    assert set(tensors) == {"keys", "kinds", "layout", "sparse_index", "sparse_value", "ints", "floats"}
    for lazy in (False, True):
        stored, extra = _load_packed(path, KEY, lazy=lazy)
        assert extra == {"labels": ["a", "b"]} and sorted(stored) == sorted(entries)
        for key, piece in entries.items():
            same(piece, stored[key])
    reader = FileTensors(path)
    assert reader.metadata["checksum"] == checksum(reader.parts())
    assert json.loads(reader.metadata["kinds"]) == ["chain", "sequences"]
    reader.close()
    assert _load_packed(path, "cd" * 16) is None  # a file is its key's only


def test_an_empty_set_and_a_flipped_byte(tmp_path):
    path = tmp_path / "empty.safetensors"
    _save_packed({}, path, KEY)
    stored, _ = _load_packed(path, KEY)
    assert len(stored) == 0
    path = tmp_path / "t.safetensors"
    _save_packed(pieces(), path, KEY)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    assert _load_packed(path, KEY) is None


class OnePieceAtATime(Mapping):
    """Entries made fresh on each read, remembering weak references to every piece's tensors."""

    def __init__(self, entries):
        self.entries, self.alive = entries, []

    def __len__(self):
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def __getitem__(self, key):
        gc.collect()
        held = sum(ref() is not None for ref in self.alive)
        assert held == 0, f"{held} tensors of earlier pieces are still held"
        piece = {name: (value if name == "kind" else
                        {**value, "index": value["index"].clone(), "value": value["value"].clone()}
                        if isinstance(value, dict) else value.clone()) for name, value in self.entries[key].items()}
        for value in piece.values():
            for t in (value.values() if isinstance(value, dict) else [value]):
                if isinstance(t, torch.Tensor):
                    self.alive.append(weakref.ref(t))
        return piece


def test_a_merge_holds_one_piece_at_a_time(tmp_path):
    entries = pieces(12)
    cache = TargetCache(tmp_path, KEY)
    cache.save({"entries": OnePieceAtATime(entries), "labels": ["x"]})
    stored = cache.load(lazy=True)
    assert stored["labels"] == ["x"]
    for key, piece in entries.items():
        same(piece, stored["entries"][key])


def _open_files(folder) -> int:
    import os

    fds = os.listdir("/proc/self/fd")
    return sum(1 for fd in fds if os.path.realpath(f"/proc/self/fd/{fd}").startswith(str(folder)))


def test_reading_many_shards_holds_no_descriptor_per_shard(tmp_path):
    import pytest

    if not __import__("os").path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to count open files")
    cache = TargetCache(tmp_path, KEY)
    shards = [pieces(3, seed) for seed in range(30)]
    for n, entries in enumerate(shards):
        cache.save_shard({f"{n:04d}{k[4:]}": v for k, v in entries.items()})
    merged = cache.load_partial()
    assert len(merged) == 90 and _open_files(tmp_path) == 0  # 30 shard readers, none holding its file open
    for n, entries in enumerate(shards):
        for key, piece in entries.items():
            same(piece, merged[f"{n:04d}{key[4:]}"])
    assert _open_files(tmp_path) == 0
