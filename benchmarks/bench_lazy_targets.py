"""Memory of teacher targets during training: the whole cache file held in memory against lazy reading.

    python -m benchmarks.bench_lazy_targets [--sentences 5000 20000] [--labels 17] [--length 14]

Writes one packed target file per size with synthetic CRF pieces (unary [n, L] and pairwise [n-1, L, L]
marginals of random chains, the kind structural KD stores for a CRF student; dense, so the worst case), then, in
a fresh process per (size, reader), opens it as annotate does and reads every piece once, as an epoch of
training does. Reports the file size, the reader's peak resident memory (VmHWM) above the process's baseline,
and the time per 1,000 pieces. Writes ``benchmarks/results/lazy_targets.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import in_fresh_process

OUT = Path(__file__).resolve().parent / "results" / "lazy_targets.json"


def _piece(n: int, labels: int, generator):
    import torch

    unary = torch.rand(n, labels, generator=generator)
    pairwise = torch.rand(n - 1, labels, labels, generator=generator)
    return {"kind": "chain", "unary": unary / unary.sum(-1, keepdim=True),
            "pairwise": pairwise / pairwise.sum((-1, -2), keepdim=True)}


def _write(folder: Path, count: int, labels: int, length: int) -> Path:
    import torch

    from skd_flair.training.cache import SUFFIX, _save_packed, compress, digest

    generator = torch.Generator().manual_seed(count)
    entries = {digest("sentence", i)[:32]: compress(_piece(length, labels, generator), 1e-7) for i in range(count)}
    key = digest("bench", count)
    path = folder / f"{key}{SUFFIX}"
    _save_packed(entries, path, key)
    return path


def _measure(path: str, lazy: bool, queue) -> None:
    import torch

    torch.set_num_threads(1)
    from skd_flair.training.cache import SUFFIX, TargetCache, decompress
    from skd_flair.training.speed import peak_mb, rss_mb

    base = rss_mb()
    start = time.perf_counter()
    cache = TargetCache(Path(path).parent, Path(path).name[:-len(SUFFIX)])
    entries = cache.load(lazy=lazy)["entries"]
    opened = time.perf_counter() - start
    keys = list(entries)
    start = time.perf_counter()
    for key in keys:
        decompress(entries[key])
    read = time.perf_counter() - start
    queue.put({"open_seconds": round(opened, 2), "ms_per_1000_pieces": round(1000 * read / len(keys) * 1000, 1),
               "peak_rss_above_baseline_mb": round(peak_mb() - base, 1)})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--labels", type=int, default=17)
    parser.add_argument("--length", type=int, default=14)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.sentences:
            path = _write(Path(tmp), count, args.labels, args.length)
            row = {"sentences": count, "file_mb": round(path.stat().st_size / 2 ** 20, 1)}
            for lazy in (False, True):
                row["lazy" if lazy else "in_memory"] = in_fresh_process(_measure, str(path), lazy)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
            path.unlink()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"labels": args.labels, "tokens": args.length, "rows": rows}, indent=2) + "\n")
    print("| sentences | file MB | in memory: peak MB / open s / ms per 1k pieces | lazy: peak MB / open s / ms per 1k |")
    print("|---|---|---|---|")
    for r in rows:
        a, b = r["in_memory"], r["lazy"]
        print(f"| {r['sentences']:,} | {r['file_mb']} | {a['peak_rss_above_baseline_mb']} / {a['open_seconds']} / "
              f"{a['ms_per_1000_pieces']} | {b['peak_rss_above_baseline_mb']} / {b['open_seconds']} / "
              f"{b['ms_per_1000_pieces']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
