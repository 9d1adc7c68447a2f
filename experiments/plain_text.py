"""The unlabelled part of a training file as plain text, one sentence a line, the way a user's raw text arrives.

The learning-curve suites read their unlabelled sentences through the ``text`` corpus type (``format:
plain``), the user-facing path, rather than through a column file with its labels dropped. The files are
written under the experiment cache (never into git: CoNLL data may not be redistributed), atomically, once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

from .common import CACHE


def text_path(name: str) -> str:
    return str(CACHE / "experiments" / "text" / f"{name}.txt")


def write_plain_text(corpus_spec: Dict, name: str, skip: int) -> str:
    """Write the training sentences of ``corpus_spec`` after the first ``skip`` (the teacher's gold ones) to
    ``text_path(name)``, tokens joined by single spaces; return the path. An existing file is kept."""
    path = Path(text_path(name))
    if path.exists():
        return str(path)
    from skd_flair.training import atomic_path
    from skd_flair.training.corpora import load_corpus

    spec = {k: v for k, v in corpus_spec.items() if k not in ("sample_train", "sample_dev", "sample_test")}
    corpus = load_corpus({**spec, "skip_train": skip, "sample_dev": 0, "sample_test": 0})
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for sentence in corpus.train:
                f.write(" ".join(token.text for token in sentence) + "\n")
    return str(path)
