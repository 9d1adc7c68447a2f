"""Model-hub layout: a saved model placed where Flair's hub loading (``Model.load("org/name")``) finds it."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Optional, Union

import flair

__all__ = ["install_in_flair_cache"]


def install_in_flair_cache(model_file: Union[str, Path], repo_id: str, cache_root: Optional[Path] = None,
                           revision: str = "main") -> Path:
    """Copy a saved model into Flair's cache as if `repo_id` had been downloaded from the Hugging Face hub.

    Flair resolves a hub id with ``hf_hub_download(repo_id, "pytorch_model.bin", cache_dir=<flair cache>/models/
    <name>)``; with ``HF_HUB_OFFLINE=1`` that returns the snapshot below, so air-gapped machines (and tests)
    load hub ids exactly as users with internet do. To publish for real, use Flair's ``model.push_to_hub``.
    """
    model_file = Path(model_file)
    if not model_file.is_file():
        raise FileNotFoundError(f"no saved model at {model_file}")
    if "/" not in repo_id:
        raise ValueError(f"a hub id looks like 'organisation/name', got {repo_id!r}")
    root = Path(cache_root or flair.cache_root)
    name = repo_id.split("/", 1)[1]
    repo_dir = root / "models" / name / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(model_file.read_bytes()).hexdigest()
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_file, snapshot / "pytorch_model.bin")
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / revision).write_text(commit)
    return snapshot / "pytorch_model.bin"
