"""Flair glue: embeddings and corpora built from configuration (``embeddings.py``, ``corpora.py``), teacher
annotation and the trainer plugin that drives KD.

The two helpers below are shared by the modules of this package and import nothing heavy."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

CACHE_ENV = "SKD_FLAIR_CACHE"


def cache_dir(sub: Optional[str] = None) -> Path:
    """skd_flair's own cache folder: ``$SKD_FLAIR_CACHE`` or ``~/.cache/skd_flair`` (created on demand)."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "skd_flair").expanduser()
    path = root / sub if sub else root
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_path(target: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it is renamed onto `target` in one step, on any
    error it is removed. An interrupted write therefore never leaves a partial `target` that a later run
    would take for a finished one."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; give the finished file the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()

