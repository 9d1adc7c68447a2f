"""Teacher targets are content-addressed: what a changed corpus costs to annotate again.

Needs the demo's teacher and KD student (``make demo``). Annotates the demo's 400 training sentences into a fresh
cache, then three changed corpora with the same teacher and objective, and records per step how many sentences
the teacher ran on, how many were reused and the seconds taken, in ``experiments/results/cache_reuse.json``.

    python -m experiments.cache_reuse
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TEACHER = REPO / "runs" / "demo" / "teacher" / "best-model.pt"
STUDENT = REPO / "runs" / "demo" / "student_kd" / "best-model.pt"
OUT = REPO / "experiments" / "results" / "cache_reuse.json"


def main() -> int:
    torch.set_num_threads(1)
    if not (TEACHER.is_file() and STUDENT.is_file()):
        print(f"needs {TEACHER} and {STUDENT}: run `make demo` first", file=sys.stderr)
        return 2
    from flair.data import Sentence

    from skd_flair.models import DistillableTagger
    from skd_flair.training.annotate import annotate
    from skd_flair.training.corpora import load_corpus

    corpus = load_corpus({"type": "column", "data_folder": str(REPO / "resources" / "data" / "wikiann_en"),
                          "column_format": {0: "text", 1: "ner"}})
    train = [Sentence([t.text for t in s]) for s in corpus.train]
    teacher, student = DistillableTagger.load(TEACHER), DistillableTagger.load(STUDENT)
    edited = list(train)
    edited[7] = Sentence([t.text for t in train[7]] + ["."])  # one token added to one sentence
    steps = [("all 400 training sentences, empty cache", train),
             ("the same 400 in another order (the same corpus: a cache hit)", train[::-1]),
             ("one token added to one sentence", edited),
             ("the first 300 sentences (sample_train: 300)", train[:300])]
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for name, sentences in steps:
            start = time.perf_counter()
            targets = annotate(teacher, sentences, student, "structural", cache_dir=cache, progress=False)
            seconds = time.perf_counter() - start
            stats, hit = targets.stats, bool(targets.stats.get("cache_hit"))
            rows.append({"step": name, "sentences": len(targets), "annotated": 0 if hit else stats["sentences"],
                         "reused": len(targets) if hit else stats["reused"], "seconds": round(seconds, 2),
                         "cache_file_hit": hit})
    OUT.write_text(json.dumps({"teacher": str(TEACHER.relative_to(REPO)), "steps": rows}, indent=1) + "\n")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
