"""Zero-shot F1 of a trained NER student on another language's test set (the multi-teacher issue asks it of the
two-language student on Portuguese):

    python -m experiments.zeroshot experiments/runs/multi_ennl/crf_structural-seed1/best-model.pt \
        --suite zeroshot_pt --out multi_ennl/zeroshot_pt-crf_structural-seed1.json

The test sentences are the suite's (``zeroshot_pt``: 1,000 WikiANN Portuguese sentences, PER/LOC/ORG), read
through the same ``load_corpus``. The student may know entity types the test set does not annotate (CoNLL's
MISC): its spans of those types are dropped before scoring, so ``f1`` is exact-match span F1 over the test
set's types; ``f1_all_types`` counts them as false positives (Flair's own evaluation). Writes the JSON under
``experiments/results``.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter

import torch

from experiments.common import RESULTS, write_json
from experiments.suites import SUITES

PREDICTED = "zeroshot_predicted"


def span_f1(gold: Counter, predicted: Counter) -> dict:
    hits = sum((gold & predicted).values())
    p = hits / max(sum(predicted.values()), 1)
    r = hits / max(sum(gold.values()), 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "gold": sum(gold.values()), "predicted": sum(predicted.values()), "correct": hits}


def spans(sentences, label_type: str, keep=None) -> Counter:
    out = Counter()
    for i, sentence in enumerate(sentences):
        for span in sentence.get_spans(label_type):
            tag = span.get_label(label_type).value
            if keep is None or tag in keep:
                out[(i, span.tokens[0].idx, span.tokens[-1].idx, tag)] += 1
    return out


def zero_shot_scores(model, sentences) -> dict:
    """Span F1 of ``model`` on ``sentences`` over the types their gold labels use (``main``; ``test``: its counts),
    and counting every predicted type (``all_types``; ``test_all_types``)."""
    label_type = model.label_type
    model.predict(sentences, label_name=PREDICTED, mini_batch_size=32)
    gold = spans(sentences, label_type)
    types = sorted({key[-1] for key in gold})
    known = sorted({t.split("-")[-1] for t in model.label_dictionary.get_items() if t not in ("O", "<unk>")})
    test = span_f1(gold, spans(sentences, PREDICTED, keep=set(types)))
    every = span_f1(gold, spans(sentences, PREDICTED))
    for sentence in sentences:
        sentence.remove_labels(PREDICTED)
    return {"main": test["f1"], "all_types": every["f1"], "test_types": types, "student_types": known,
            "test": test, "test_all_types": every}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a saved student (.pt)")
    parser.add_argument("--suite", default="zeroshot_pt", help="the suite whose test sentences score it")
    parser.add_argument("--out", required=True, help="result file under experiments/results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from skd_flair.training.corpora import load_corpus
    from skd_flair.training.models import load_model

    suite = SUITES[args.suite]
    corpus = load_corpus(suite.transfer or suite.corpus)
    sentences = list(corpus.test)
    model = load_model({"path": args.model})
    scores = zero_shot_scores(model, sentences)
    record = {"model": args.model, "suite": args.suite, "test_sentences": len(sentences),
              **{key: scores[key] for key in ("test_types", "student_types", "test", "test_all_types")},
              "command": "python -m experiments.zeroshot " + " ".join(argv or sys.argv[1:])}
    record["f1"], record["f1_all_types"] = record["test"]["f1"], record["test_all_types"]["f1"]
    out = RESULTS / args.out
    write_json(out, record)
    print(f"{args.model}: zero-shot {args.suite} F1 {100 * record['f1']:.2f} over {record['test_types']} "
          f"({100 * record['f1_all_types']:.2f} counting its other types as errors) -> {out}")


if __name__ == "__main__":
    main()
