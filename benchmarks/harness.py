"""Shared timing and memory measurement for the structure benchmarks (one thread, CPU).

A benchmark module defines ``CASES``, ``LIBS`` (ours first), ``CONTENDERS`` (lib -> factory(case) -> fn or
None), ``make_inputs(batch, min_len, max_len, dtype)`` (lengths last) and ``agreement(case, ours, other,
lengths)``, then calls ``main(module)``. Times are the minimum over ``--reps`` runs after one warm-up (the
median is printed too). Memory is the peak resident-set growth of one run in a fresh process (glibc told to
return freed blocks of 64 KiB and more to the system, so the resident set follows the live tensors).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings

import torch

warnings.filterwarnings("ignore")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# the span benchmarks' shared options: name -> (default, help)
SPAN_OPTIONS = {"n": (40, "sentence length (every sentence)"), "width": (10, "max span width"),
                "types": (4, "entity types"), "batch": (32, None), "repeats": (7, None)}


def parse_options(description: str, argv, options) -> argparse.Namespace:
    """A benchmark's options ``{name: (default, help)}`` (a default of False is a flag) parsed from `argv`; torch
    is put on one thread, as every benchmark here measures."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, (default, help_text) in options.items():
        flag = "--" + name.replace("_", "-")
        if default is False:
            parser.add_argument(flag, action="store_true", help=help_text)
        else:
            parser.add_argument(flag, type=type(default), default=default, help=help_text)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    return args


def time_it(fn, args, reps: int):
    fn(*args)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times) * 1e3, statistics.median(times) * 1e3


def time_rounds(fn, repeats: int, round_seconds: float = 0.1) -> float:
    """Median seconds per call over `repeats` rounds of about `round_seconds` each (after a warm-up)."""
    fn()
    t = time.perf_counter()
    fn()
    per_round = max(1, int(round_seconds / max(time.perf_counter() - t, 1e-6)))
    rounds = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(per_round):
            fn()
        rounds.append((time.perf_counter() - t) / per_round)
    return statistics.median(rounds)


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def in_fresh_process(target, *args):
    """``target(*args, queue)`` run in a freshly spawned process (its own memory high-water mark); what it puts
    on the queue."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def measure_memory_here(suite, case: str, lib: str, dtype: str, batch: int, min_len: int, max_len: int) -> float:
    """Peak resident growth (MiB) of one run in this (fresh) process (Linux: resets the high-water mark)."""
    torch.set_num_threads(1)
    fn = suite.CONTENDERS[lib](case)
    fn(*suite.make_inputs(2, 3, 4, DTYPES[dtype]))  # warm-up: lazy imports, kernels, small caches
    args = suite.make_inputs(batch, min_len, max_len, DTYPES[dtype])
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    base = _status_kib("VmRSS")
    out = fn(*args)
    del out
    return (_status_kib("VmHWM") - base) / 1024.0


def memory_in_subprocess(suite, case, lib, dtype, opts) -> float:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0", OMP_NUM_THREADS="1")
    module = suite.__spec__.name if getattr(suite, "__spec__", None) else suite.__name__
    cmd = [sys.executable, "-m", module, "--measure", case, lib, dtype, "--batch", str(opts.batch),
           "--min-len", str(opts.min_len), "--max-len", str(opts.max_len)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(suite, argv=None):
    parser = argparse.ArgumentParser(description=suite.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--min-len", type=int, default=20)
    parser.add_argument("--max-len", type=int, default=40)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--cases", nargs="*", default=suite.CASES, choices=suite.CASES)
    parser.add_argument("--measure", nargs=3, metavar=("CASE", "LIB", "DTYPE"), help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.measure:
        print(measure_memory_here(suite, *opts.measure, opts.batch, opts.min_len, opts.max_len))
        return
    torch.set_num_threads(1)
    print(f"B={opts.batch}, lengths {opts.min_len}..{opts.max_len}, one thread, torch {torch.__version__}; "
          f"ms = min (median) of {opts.reps}; mem = peak resident growth of one run, MiB")
    header = f"{'case':<16}{'dtype':<9}" + "".join(f"{lib:>26}" for lib in suite.LIBS) + f"{'speed-up':>10}  check"
    print(header)
    print("-" * len(header))
    ours_name = suite.LIBS[0]
    for case in opts.cases:
        for dtype in DTYPES:
            args = suite.make_inputs(opts.batch, opts.min_len, opts.max_len, DTYPES[dtype])
            cells, best_other, results, ours_ms = [], None, {}, None
            for lib in suite.LIBS:
                fn = suite.CONTENDERS[lib](case)
                if fn is None:
                    cells.append(f"{'-':>26}")
                    continue
                results[lib] = fn(*args)
                fastest, median = time_it(fn, args, opts.reps)
                mem = "" if opts.no_memory else f" {memory_in_subprocess(suite, case, lib, dtype, opts):6.1f}M"
                cells.append(f"{fastest:9.2f} ({median:7.2f}){mem:>8}")
                if lib == ours_name:
                    ours_ms = fastest
                else:
                    best_other = fastest if best_other is None else min(best_other, fastest)
            checks = ", ".join(f"{lib}: {suite.agreement(case, results[ours_name], r, args[-1])}"
                               for lib, r in results.items() if lib != ours_name)
            ratio = f"{best_other / ours_ms:9.1f}x" if best_other else f"{'-':>10}"
            print(f"{case:<16}{dtype:<9}" + "".join(cells) + f"{ratio}  {checks}")
