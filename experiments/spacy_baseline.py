"""What a user would otherwise pick for fast CPU NER: spaCy's efficiency NER pipeline, trained on the same gold
sentences as a suite's students and compared with our students on the same test sentences, in one run.

    python -m experiments.spacy_baseline ner_en --student experiments/runs/curve_en/crf_none-seed1/best-model.pt \
        --student experiments/runs/curve_en/u12000_crf_structural-seed1/best-model.pt

spaCy's own recipe, unchanged: ``spacy init config --pipeline ner --optimize efficiency`` (hash embeddings +
CNN tok2vec, no pretrained vectors) and ``spacy train`` with its defaults (evaluation every 200 steps, stop after
1,600 steps without a better dev score), on the suite's sampled gold train and dev sentences (read through the
same ``load_corpus``, so the same sentences). Test F1 is spaCy's entity-level exact-match F1 (the CoNLL
measure, as Flair's). Speed: sentences per second on one thread, batch 1 and 32, pre-tokenised input for both
(spaCy gets ``Doc`` objects, the students Flair sentences), teacher excluded. Writes
``experiments/results/spacy_<suite>.json``; needs ``pip install 'skd_flair[spacy]'``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from experiments.common import RESULTS, write_json
from experiments.suites import SUITES

WORK = Path.home() / ".cache" / "skd_flair" / "experiments" / "spacy"


def _docs(nlp, sentences, label_type: str):
    """spaCy documents with the same tokens and gold entity spans as Flair's sentences."""
    from spacy.tokens import Doc, Span

    docs = []
    for sentence in sentences:
        doc = Doc(nlp.vocab, words=[t.text for t in sentence])
        doc.ents = [Span(doc, span.tokens[0].idx - 1, span.tokens[-1].idx, label=span.tag)
                    for span in sentence.get_spans(label_type)]
        docs.append(doc)
    return docs


def _timed(run, items, batch: int, repeats: int = 3) -> float:
    """Best of `repeats` passes, sentences per second."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run(items, batch)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite")
    parser.add_argument("--student", action="append", default=[], help="a saved student to compare (repeatable)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--retrain", action="store_true", help="train spaCy again even when its model exists")
    parser.add_argument("--export-frequent", type=int, metavar="N",
                        help="also time each student exported as it ships: int8, word table cut to the words of the "
                             "whole training file plus the N most frequent of its table (benchmarks.bench_student)")
    parser.add_argument("--spacy-train", nargs=argparse.REMAINDER, default=[],
                        help="further `spacy train` overrides, e.g. --training.max_steps 100 (a smoke test)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        import spacy
        from spacy.tokens import Doc, DocBin
        from spacy.training import Example
    except ImportError:
        print("needs spaCy: pip install 'skd_flair[spacy]'", file=sys.stderr)
        return 2
    from skd_flair.training.corpora import load_corpus
    from skd_flair.training.models import load_model

    suite = SUITES[args.suite]
    label_type = "ner"
    corpus = load_corpus(suite.corpus)
    work = WORK / f"{args.suite}-seed{args.seed}"
    work.mkdir(parents=True, exist_ok=True)
    blank = spacy.blank("en")
    paths = {}
    for split in ("train", "dev", "test"):
        paths[split] = work / f"{split}.spacy"
        DocBin(docs=_docs(blank, getattr(corpus, split), label_type)).to_disk(paths[split])
    config, out = work / "config.cfg", work / "model"
    start, train_seconds = time.time(), None  # None: trained by an earlier run (its log has the time)
    if args.retrain or not (out / "model-best").is_dir():
        subprocess.run([sys.executable, "-m", "spacy", "init", "config", str(config), "--lang", "en",
                        "--pipeline", "ner", "--optimize", "efficiency", "--force"], check=True)
        subprocess.run([sys.executable, "-m", "spacy", "train", str(config), "--output", str(out),
                        "--paths.train", str(paths["train"]), "--paths.dev", str(paths["dev"]),
                        "--system.seed", str(args.seed), *args.spacy_train], check=True)
        train_seconds = time.time() - start
    nlp = spacy.load(out / "model-best")
    test = list(corpus.test)
    words = [[t.text for t in s] for s in test]
    scores = nlp.evaluate([Example(Doc(nlp.vocab, words=w), gold) for w, gold in zip(words, _docs(nlp, test,
                                                                                                label_type))])

    def spacy_run(items, batch):
        list(nlp.pipe((Doc(nlp.vocab, words=w) for w in items), batch_size=batch))

    rows = [{"model": f"spaCy {spacy.__version__} efficiency NER (gold only)", "test_f1": scores["ents_f"],
             "size_mb": sum(p.stat().st_size for p in (out / "model-best").rglob("*") if p.is_file()) / 2**20,
             "sentences_per_second": {str(b): _timed(spacy_run, words, b) for b in (1, 32)},
             "train_seconds": train_seconds}]
    students = list(args.student)
    if args.export_frequent:
        from skd_flair.training.export import export_model, frequent_words, load_tagger

        whole = load_corpus({**suite.corpus, "sample_train": None, "sample_dev": 0, "sample_test": 0})
        train_words = {t.text for s in whole.train for t in s}
        for path in args.student:
            frequent = frequent_words(load_tagger(path), args.export_frequent)
            vocab = work / "export_vocab.txt"
            vocab.write_text("\n".join(sorted(train_words | set(frequent))), encoding="utf-8")
            target = work / f"{Path(path).parent.name}-int8-{args.export_frequent}.pt"
            export_model(path, target, vocab=str(vocab), quantize="int8")
            students.append(str(target))
    from flair.data import Sentence

    for path in students:
        model = load_model({"path": path})
        result = model.evaluate(test, gold_label_type=label_type, mini_batch_size=32)

        def flair_run(items, batch, model=model):
            model.predict([Sentence(w) for w in items], mini_batch_size=batch)

        rows.append({"model": path, "test_f1": result.main_score, "size_mb": Path(path).stat().st_size / 2**20,
                     "sentences_per_second": {str(b): _timed(flair_run, words, b) for b in (1, 32)}})
    record = {"suite": args.suite, "seed": args.seed, "test_sentences": len(test), "train_sentences": len(corpus.train),
              "rows": rows, "command": "python -m experiments.spacy_baseline " + " ".join(argv or sys.argv[1:])}
    write_json(RESULTS / f"spacy_{args.suite}.json", record)
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
