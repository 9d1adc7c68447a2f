"""What head-awareness costs a parsing student at prediction: the plain light student and the head-aware one of
``parsing_ewt``, timed in one process through Flair's ``predict`` and through the torch-free ONNX runner (each
exported to a temporary folder), on the first UD English-EWT test sentences, one thread, batch 32 and 1.

    python -m benchmarks.head_aware_speed [--plain PATH] [--head-aware PATH] [--sentences 300]

Writes ``benchmarks/results/head_aware_speed.json`` (sentences per second; ratios head-aware / plain per path).
Both students are timed in the same run, so the ratios hold on a busy machine where the absolute speeds do not.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import tempfile
from pathlib import Path

from benchmarks.harness import time_it

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "experiments" / "runs" / "parsing_ewt"
EWT = REPO.parent / "shared" / "data" / "ud" / "en_ewt"
REPEATS = 2


def _rate(fn, count: int) -> float:
    """Sentences per second of the best of `REPEATS` timed calls, after one warm-up call (`harness.time_it`)."""
    best_ms, _ = time_it(fn, (), REPEATS)
    return count / (best_ms / 1e3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plain", type=Path, default=RUNS / "none-seed1" / "best-model.pt")
    parser.add_argument("--head-aware", type=Path, default=RUNS / "hao_none-seed1" / "best-model.pt")
    parser.add_argument("--sentences", type=int, default=300)
    args = parser.parse_args(argv)
    for path in (args.plain, args.head_aware):
        if not path.exists():
            print(f"head_aware_speed: {path} does not exist (python -m experiments.run parsing_ewt --only none "
                  f"hao_none --seeds 1)", file=sys.stderr)
            return 2
    import torch
    from flair.datasets import UniversalDependenciesCorpus

    from skd_flair.cli import main as cli
    from skd_flair.models.dependency_tagger import DependencyTagger
    from skd_flair.onnx_runner import load

    torch.set_num_threads(1)
    logging.getLogger("flair").setLevel(logging.WARNING)
    sentences = list(UniversalDependenciesCorpus(EWT).test)[:args.sentences]
    texts = [[t.text for t in s] for s in sentences]
    out = {"sentences": len(texts), "threads": 1, "students": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in (("plain", args.plain), ("head_aware", args.head_aware)):
            model = DependencyTagger.load(str(path))
            rows = {"model": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
                    "head_relations": bool(getattr(model, "head_relations", False)),
                    "head_offsets": bool(getattr(model, "head_offsets", False))}
            for batch in (32, 1):
                fresh = iter([copy.deepcopy(sentences) for _ in range(REPEATS + 1)])  # copied outside the timing
                rows[f"predict_b{batch}"] = _rate(lambda: model.predict(next(fresh), mini_batch_size=batch),
                                                  len(texts))
            folder = Path(tmp) / name
            if cli(["export", str(path), str(folder), "--format", "onnx"]) != 0:
                return 1
            runner = load(folder)
            for batch in (32, 1):
                rows[f"onnx_b{batch}"] = _rate(lambda: runner.predict(texts, batch_size=batch), len(texts))
            out["students"][name] = rows
    plain, head = out["students"]["plain"], out["students"]["head_aware"]
    out["head_aware_over_plain"] = {k: head[k] / plain[k] for k in plain if k.startswith(("predict", "onnx"))}
    target = REPO / "benchmarks" / "results" / "head_aware_speed.json"
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["head_aware_over_plain"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
