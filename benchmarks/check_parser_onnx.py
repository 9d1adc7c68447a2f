"""What exporting a parsing student to ONNX costs in LAS: the student, its trimmed Flair export, and the ONNX
export (float32 and int8) decoded by the torch-free runner, on the ``parsing_1o`` suite's 1,000 UD English-EWT
test sentences. The words kept are the whole EWT training file's plus the student table's most frequent ones.

    python -m benchmarks.check_parser_onnx [--student PATH] [--frequent 100000]

Writes ``benchmarks/results/parser_onnx.json`` (LAS in percent, sizes in MB). Speed is bench_student's job.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "experiments" / "runs" / "parsing_1o" / "slfl_none-seed4" / "best-model.pt"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--student", type=Path, default=DEFAULT)
    parser.add_argument("--frequent", type=int, default=100000)
    args = parser.parse_args(argv)
    if not args.student.exists():
        print(f"check_parser_onnx: {args.student} does not exist (python -m experiments.run parsing_1o --only "
              f"slfl_none --seeds 4)", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(1)
    logging.getLogger("flair").setLevel(logging.WARNING)
    from benchmarks.bench_student import _score
    from experiments.suites import SUITES
    from skd_flair.training.corpora import load_corpus
    from skd_flair.training.export import export_model, frequent_words, load_tagger

    corpus = load_corpus({**SUITES["parsing_1o"].corpus, "sample_train": None})
    test = list(corpus.test)
    words = {t.text for s in corpus.train for t in s} | set(frequent_words(load_tagger(args.student), args.frequent))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "vocab.txt").write_text("\n".join(sorted(words)), encoding="utf-8")
        rows["student"] = {"las": _score(args.student, test, "dependency_tagger", "dependency"),
                           "size_mb": round(args.student.stat().st_size / 2 ** 20, 2)}
        for name, options in (("trimmed", {}), ("ONNX", {"format": "onnx"}),
                              ("ONNX int8", {"format": "onnx", "quantize": "int8"})):
            target = tmp / (name.replace(" ", "_") + ("" if "format" in options else ".pt"))
            summary = export_model(args.student, target, vocab=str(tmp / "vocab.txt"), **options)
            rows[name] = {"las": _score(target, test, "dependency_tagger", "dependency"),
                          "size_mb": summary["size_mb_after"]}
            print(f"check_parser_onnx: {name}: LAS {100 * rows[name]['las']:.2f}", file=sys.stderr, flush=True)
    record = {"student": str(args.student.relative_to(REPO)) if args.student.is_relative_to(REPO)
              else str(args.student), "test_sentences": len(test), "words_kept": len(words),
              "rows": {k: {"las": round(100 * v["las"], 2), "size_mb": v["size_mb"]} for k, v in rows.items()}}
    out = REPO / "benchmarks" / "results" / "parser_onnx.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
