"""The student a user ships, against its teacher: size, F1 and speed before and after export (CoNLL-2003 English),
or LAS for the parsing student (UD English-EWT, ``--task parsing``).

    python -m benchmarks.bench_student [--student PATH] [--teacher PATH] [--speed-sentences 300]
    python -m benchmarks.bench_student --task parsing [--student PATH] [--frequent 100000]

For parsing the defaults are the ``parsing_1o`` teacher and its light student with unlabelled text
(``python -m experiments.run parsing_1o --only slfl_u_tree_t1``); the words kept are the whole EWT training file's
(the student read all of it, 2,000 sentences with trees, the rest as text) plus the frequent ones; the fast path
(``fast_predict``: ``skd_flair.models.fast_parser``) is timed for the float student rows, and the ONNX rows decode
trees with ``skd_flair.parsing_runtime``. Writes ``benchmarks/results/parsing_ship.json``.

Needs ``../shared/data/ner/conll03_en`` and trained models (``python -m experiments.run curve_en --only crf_none``
or any CoNLL-03 tagger student, and the ``ner_en`` teacher). The student is exported as a user would:
- ``trimmed (training text)``: the word table cut to the tokens of the 2,000 training sentences (``--corpus``),
  plus those of any ``--text`` file the student also read (its unlabelled text);
- ``trimmed (+ N frequent words)``: the same plus the N most frequent words of the student's own table (GloVe
  lists its words by frequency), the ``--vocab`` a user would pass to cover unseen text;
- that, with int8 LSTM/Linear layers, and with fp16 weights; and as an ONNX folder, float32 and int8.
Every row is scored on the same 1,000 test sentences, and timed on the first `--speed-sentences` of them, each
model in a fresh process at one thread (``skd_flair.training.speed``). Writes
``benchmarks/results/student_ship.json`` and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "experiments" / "runs"
# per task: suite whose test sample is scored, default models, model types, label type, output file
TASKS = {
    "ner": dict(suite="ner_en", student=("curve_en", "crf_none-seed1"), teacher=("ner_en", "teacher"),
                kinds=("tagger", "tagger"), label="ner", out="student_ship.json", onnx=True,
                corpus="CoNLL-2003 English test (1,000 sentences, the suites' sample)", score="F1"),
    "parsing": dict(suite="parsing_1o", student=("parsing_1o", "slfl_u_tree_t1-seed1"),
                    teacher=("parsing_1o", "teacher"), kinds=("parser", "dependency_tagger"), label="dependency",
                    out="parsing_ship.json", onnx=True, score="LAS",
                    corpus="UD English-EWT test (1,000 sentences, the suite's sample)"),
}


def _kept(folder: Path) -> Path:
    from skd_flair.training.models import kept_model

    return kept_model(folder) or folder / "final-model.pt"  # (missing: the caller's error names the path)


def _score(path: Path, test, kind: str, label: str) -> float:
    if path.is_dir():  # ONNX: the runner's output scored as the model's evaluate scores it
        from skd_flair.onnx_runner import OnnxParser, load

        runner = load(path)
        results = runner.predict([[t.text for t in s] for s in test])
        if isinstance(runner, OnnxParser):  # LAS over every word with a gold head, as DependencyTagger.evaluate
            from skd_flair.models.dependency_eval import AttachmentScores

            counts = AttachmentScores()
            for sentence, result in zip(test, results):
                counts.add(sentence, result["heads"], result["relations"], label)
            return counts.scores()["las"]
        correct = predicted = gold = 0  # spans against the gold spans, micro F1 as Flair computes it
        for sentence, result in zip(test, results):
            spans = {(span[0].idx - 1, span[-1].idx, span.tag) for span in sentence.get_spans("ner")}
            mine = {(x["start"], x["end"], x["type"]) for x in result["spans"]}
            correct, predicted, gold = correct + len(spans & mine), predicted + len(mine), gold + len(spans)
        p, r = correct / max(predicted, 1), correct / max(gold, 1)
        return 2 * p * r / max(p + r, 1e-12)
    from skd_flair.training.models import load_model

    model = load_model({"path": str(path), "type": kind}, where="model")
    return model.evaluate(test, gold_label_type=label, mini_batch_size=32).main_score


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="ner")
    parser.add_argument("--student", type=Path)
    parser.add_argument("--teacher", type=Path)
    parser.add_argument("--frequent", type=int, nargs="+", default=[20000, 100000],
                        help="numbers of frequent table words kept besides the training text (one row each; the "
                             "last also int8, fp16 and ONNX)")
    parser.add_argument("--text", type=Path, nargs="+", default=[],
                        help="plain-text files (one sentence per line, tokens split on whitespace) the student also "
                             "read, e.g. its unlabelled text: their words are kept like the training sentences'")
    parser.add_argument("--baseline", type=Path,
                        help="another student timed through Flair's predict only, as \"today\" (e.g. the full-size "
                             "student when --student is a light one): the table's 'x today' column divides by it")
    parser.add_argument("--speed-sentences", type=int, default=300)
    parser.add_argument("--out", help="results file name under benchmarks/results (default: the task's)")
    args = parser.parse_args(argv)
    task = TASKS[args.task]
    args.student = args.student or _kept(RUNS.joinpath(*task["student"]))
    args.teacher = args.teacher or _kept(RUNS.joinpath(*task["teacher"]))
    teacher_kind, student_kind = task["kinds"]
    for path in (args.student, args.teacher, *args.text, *([args.baseline] if args.baseline else [])):
        if not path.exists():
            print(f"bench_student: {path} does not exist (train it first; see the docstring)", file=sys.stderr)
            return 2
    import torch

    torch.set_num_threads(1)
    logging.getLogger("flair").setLevel(logging.WARNING)
    from experiments.suites import SUITES
    from skd_flair.training.corpora import load_corpus
    from skd_flair.training.export import export_model, frequent_words, load_tagger
    from skd_flair.training.speed import speed_report

    corpus_spec = SUITES[task["suite"]].corpus
    if args.task == "parsing":  # the student read the whole training file (gold trees, then text)
        corpus_spec = {**corpus_spec, "sample_train": None}
    corpus = load_corpus(corpus_spec)
    test = list(corpus.test)
    by_frequency = frequent_words(load_tagger(args.student), max(args.frequent))
    train_words = {t.text for s in corpus.train for t in s}
    for text in args.text:  # read as the student read its unlabelled text (the same loader and tokenisation)
        unlabelled = load_corpus({"type": "text", "format": "plain", "train_file": str(text)})
        train_words.update(t.text for s in unlabelled.train for t in s)
    train_words = sorted(train_words)
    rows = {"teacher": args.teacher, "student": args.student}
    if args.baseline:
        rows["today"] = args.baseline
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "train.txt").write_text("\n".join(train_words), encoding="utf-8")
        exports = {"trimmed (training text)": dict(vocab=tmp / "train.txt")}
        for n in args.frequent:
            vocab = tmp / f"frequent{n}.txt"
            vocab.write_text("\n".join(sorted(set(train_words) | set(by_frequency[:n]))), encoding="utf-8")
            exports[f"trimmed (+ {n:,} frequent words)"] = dict(vocab=vocab)
        last = args.frequent[-1]
        exports.update({f"trimmed (+ {last:,}), int8": dict(vocab=vocab, quantize="int8"),
                        f"trimmed (+ {last:,}), fp16": dict(vocab=vocab, half=True)})
        if task["onnx"]:
            exports[f"trimmed (+ {last:,}), ONNX"] = dict(vocab=vocab, format="onnx")
            exports[f"trimmed (+ {last:,}), ONNX int8"] = dict(vocab=vocab, format="onnx", quantize="int8")
        for i, (name, options) in enumerate(exports.items()):
            target = tmp / (f"export{i}" if options.get("format") == "onnx" else f"export{i}.pt")
            export_model(args.student, target, **{k: str(v) if isinstance(v, Path) else v for k, v in options.items()})
            rows[name] = target
        results = {}
        for name, path in rows.items():
            kind = teacher_kind if name == "teacher" else student_kind
            print(f"bench_student: {name}: {task['score']} ...", file=sys.stderr, flush=True)
            score = _score(path, test, kind, task["label"])
            speed = speed_report([path], test[:args.speed_sentences], batch_sizes=(1, 32), kind=kind,
                                 fast=name not in ("teacher", "today") and kind in ("tagger", "dependency_tagger"))
            results[name] = {"f1": round(100 * score, 2), **speed[str(path)]}
    record = {"corpus": task["corpus"], "score": task["score"],
              "student": str(args.student.relative_to(REPO)) if args.student.is_relative_to(REPO) else str(args.student),
              "teacher": str(args.teacher.relative_to(REPO)) if args.teacher.is_relative_to(REPO) else str(args.teacher),
              "speed_sentences": args.speed_sentences, "threads": 1, "training_words": len(train_words),
              "text": [str(p) for p in args.text],
              "baseline": str(args.baseline) if args.baseline else None,
              # speeds are comparable within one run only; a busy machine (load > cores) slows every row
              "load_average": {"start": [round(x, 2) for x in load_before],
                               "end": [round(x, 2) for x in os.getloadavg()], "cores": os.cpu_count()},
              "rows": results}
    out = REPO / "benchmarks" / "results" / (args.out or task["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(table(record))
    return 0


def table(record: dict) -> str:
    rows = record["rows"]
    t32 = rows["teacher"]["predict"]["batch_32"]
    today = rows.get("today", {}).get("predict")  # the baseline's Flair predict, when --baseline was given
    extra = " x today b1 | x today b32 |" if today else ""
    lines = [f"| model | size (MB) | test {record.get('score', 'F1')} | load (s) | RSS after load (MB) | sent/s b1 | "
             f"sent/s b32 | x teacher b32 |{extra}", "|---|---|---|---|---|---|---|---|" + "---|---|" * bool(today)]
    for name, row in rows.items():
        paths = [k for k in ("onnx", "fast_predict", "predict") if k in row]
        best = max(paths, key=lambda k: row[k]["batch_32"])
        speed = row[best]
        ratios = (f" {speed['batch_1'] / today['batch_1']:.1f}x | {speed['batch_32'] / today['batch_32']:.1f}x |"
                  if today else "")
        lines.append(f"| {name} ({best}) | {row['size_mb']:.1f} | {row['f1']:.2f} | {row['load_seconds']:.2f} | "
                     f"{row['rss_after_load_mb']:.0f} | {speed['batch_1']:.0f} | {speed['batch_32']:.0f} | "
                     f"{speed['batch_32'] / t32:.0f}x |{ratios}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
