"""What a saved model costs to ship and run: file size, load time, memory and throughput at given batch sizes.

Each model is measured in a fresh process (``spawn``), so its load time and peak memory are its own, not those of
the models measured before it in the same command. Throughput is sentences per second from raw tokens with
embeddings dropped per batch (deployment), one warm-up batch untimed, at the thread count torch has (the CLI
sets one). For a tagger or parsing student the fast path (``fast_predict``: the same labels, one graph per batch)
is measured too; an ONNX export folder is measured through ``skd_flair.onnx_runner``.
"""
from __future__ import annotations

import multiprocessing
import resource
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["speed_report", "measure_one"]


def _status_mb(field: str) -> Optional[float]:
    """A memory figure of this process from Linux ``/proc/self/status`` (``VmRSS`` now, ``VmHWM`` its peak), or
    None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mb() -> float:
    now = _status_mb("VmRSS")
    return now if now is not None else peak_mb()


def peak_mb() -> float:
    """The process's peak resident memory. ``VmHWM`` where it exists: ``ru_maxrss`` of a spawned child starts at
    its parent's resident set at the fork (Linux carries it across exec), so it would report the parent's."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _size_mb(path: Path) -> float:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files) / 2 ** 20


def _throughput(predict, texts: List[List[str]], batch_size: int) -> float:
    predict(texts[:batch_size], batch_size)  # warm-up: lazy caches, first-call allocations
    start = time.perf_counter()
    predict(texts, batch_size)
    return len(texts) / (time.perf_counter() - start)


def measure_one(path: str, kind: str, texts: List[List[str]], batch_sizes: Sequence[int], threads: int = 1,
                fast: bool = True) -> Dict[str, Any]:
    """Size, load time, memory and throughput of one saved model (run in a fresh process by speed_report)."""
    import torch

    torch.set_num_threads(threads)
    import flair  # noqa: F401  (imported before the clock starts: its import is not the model's load time)
    from flair.data import Sentence

    target = Path(path)
    out: Dict[str, Any] = {"size_mb": round(_size_mb(target), 2) if target.exists() else None}
    before = rss_mb()
    start = time.perf_counter()
    if target.is_dir():  # an ONNX export: model.onnx + tagger.json
        from ..onnx_runner import load

        runner = load(target, threads=threads)  # an OnnxTagger or, for a parsing student, an OnnxParser
        out["load_seconds"] = round(time.perf_counter() - start, 3)
        predictors = {"onnx": lambda batch, size: runner.predict(batch, batch_size=size)}
    else:
        from .models import load_model

        model = load_model({"path": path, "type": kind}, where="model")
        model.eval()
        out["load_seconds"] = round(time.perf_counter() - start, 3)

        def predict(batch, size):
            model.predict([Sentence(list(t)) for t in batch], mini_batch_size=size, embedding_storage_mode="none")

        predictors = {"predict": predict}
        if fast:
            from ..models.fast_tagger import UnsupportedTagger, fast_predict

            try:
                fast_predict(model, [Sentence(list(texts[0]))])
            except (UnsupportedTagger, TypeError, AttributeError):
                pass  # not a tagger the fast path expresses: only predict is measured
            else:
                predictors["fast_predict"] = lambda batch, size: fast_predict(
                    model, [Sentence(list(t)) for t in batch], mini_batch_size=size)
    out["rss_after_load_mb"] = round(rss_mb() - before, 1)
    for name, predict in predictors.items():
        out[name] = {f"batch_{size}": round(_throughput(predict, texts, size), 1) for size in batch_sizes}
    out["peak_rss_mb"] = round(peak_mb(), 1)
    return out


def _measure_quietly(*args) -> Dict[str, Any]:
    """`measure_one` in a child process, whose Flair log lines must not land in the parent's stdout (the JSON)."""
    from ..logs import flair_logs_to_stderr

    with flair_logs_to_stderr():
        return measure_one(*args)


def speed_report(models: Sequence[str], sentences, batch_sizes: Sequence[int] = (1, 32), kind: str = "tagger",
                 threads: int = 1, fast: bool = True, isolate: bool = True) -> Dict[str, Dict[str, Any]]:
    """``{model: measure_one(...)}`` for every model on the same sentences, each in a fresh process when
    `isolate`. Sentences are Flair sentences or token lists."""
    texts = [[t.text for t in s] if not isinstance(s, (list, tuple)) else list(s) for s in sentences]
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("speed: no non-empty sentences to measure on")
    report = {}
    for path in models:
        args = (str(path), kind, texts, list(batch_sizes), threads, fast)
        if isolate:
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                report[str(path)] = pool.apply(_measure_quietly, args)
        else:
            report[str(path)] = measure_one(*args)
    return report
