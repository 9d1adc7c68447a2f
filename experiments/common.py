"""Paths and measurements shared by the experiment scripts."""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SKD_SHARED_DATA", REPO.parent / "shared" / "data"))
RESULTS = REPO / "experiments" / "results"  # committed: one JSON per run
RUNS = Path(os.environ.get("SKD_EXPERIMENT_RUNS", REPO / "experiments" / "runs"))  # models and logs, not committed
CACHE = Path(os.environ.get("SKD_FLAIR_CACHE", Path.home() / ".cache" / "skd_flair"))


def require_shared():
    if not SHARED.is_dir():
        raise SystemExit(f"the real data folder {SHARED} is absent; set SKD_SHARED_DATA to it")


def suites_to_run(names, suites: Dict[str, Any]) -> Iterator[Any]:
    """The named suites, after the checks and settings every experiment command shares (the real data is
    here, one thread, timestamped logs); an unknown name stops the command before anything runs."""
    unknown = [name for name in names if name not in suites]
    if unknown:
        raise SystemExit(f"unknown suite {', '.join(unknown)}; known: {', '.join(suites)}")
    require_shared()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return (suites[name] for name in names)


def write_json(path: Path, data: Dict[str, Any]):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


def read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def model_facts(model_file: Path, loader) -> Dict[str, float]:
    """Size on disk (MB) and load time (s) of a saved model."""
    start = time.perf_counter()
    loader(str(model_file))
    return {"model_mb": model_file.stat().st_size / 2 ** 20, "load_seconds": time.perf_counter() - start}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _take(lock: Path) -> bool:
    """Create ``lock`` holding this pid; a lock whose holder has died is removed and taken over."""
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and _alive(holder):
                return False
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False  # another process took the stale lock between our unlink and create


@contextmanager
def claim(lock: Path) -> Iterator[bool]:
    """Yield True while this process holds ``lock`` (a file with its pid), False if a live process holds it.

    Two runner processes given the same suite then split its runs instead of training one twice; a lock
    left by a killed process is taken over, so an interrupted suite still resumes."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    mine = _take(lock)
    try:
        yield mine
    finally:
        if mine:
            lock.unlink(missing_ok=True)
