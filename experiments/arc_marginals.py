"""How far apart are a parsing teacher's exact tree marginals and the reference's local softmax of its arc scores?

Structural KD for parsing students can take the teacher's exact arc marginals (``arc_marginals: tree``) or, as the
reference code does, a per-word softmax over heads of the arc scores alone (``local``; for a second-order teacher
this also drops the sibling scores). Where the two targets barely differ, students distilled from them cannot be
told apart by a few seeds. Per split, for every word: the entropy of each head distribution (nats), their total
variation distance, how often their most likely heads differ, and (where the split has gold trees) the mass each puts
on the gold head and how often its most likely head is the gold one. Writes
``experiments/results/<suite>/arc_marginals.json``.

    python -m experiments.arc_marginals parsing_ewt parsing_ewt_2o [--sentences 500]
"""
from __future__ import annotations

import sys
from typing import Dict, List, Optional

import torch

from skd_flair.training.corpora import load_corpus

from .common import RESULTS, RUNS
from .suites import SUITES
from .teacher_measure import cli, finished_teacher, measure_splits

KINDS = ("tree", "local")


def _entropy(p: torch.Tensor) -> torch.Tensor:  # over heads (dim 0 of a [heads, words] slice)
    return -(torch.where(p > 0, p * p.log(), p.new_zeros(()))).sum(0)


def compare(teacher, sentences: List, gold: bool, batch: int = 16) -> Dict[str, float]:
    """Means over words of the tree / local head distributions of ``sentences`` (and gold-head figures)."""
    sums: Dict[str, float] = {}
    words = 0

    def add(key, value):
        sums[key] = sums.get(key, 0.0) + float(value)

    with torch.no_grad():
        for start in range(0, len(sentences), batch):
            chunk = [s for s in sentences[start:start + batch] if len(s)]
            scores = teacher.teacher_scores(chunk)
            heads = teacher._gold(chunk, scores.arcs.shape[1])[0] if gold else None
            arcs = {kind: scores.marginals(1.0, kind).arcs for kind in KINDS}
            for sentence in chunk:
                sentence.clear_embeddings()
            for b, sentence in enumerate(chunk):
                n = len(sentence)
                p = {kind: arcs[kind][b, :n + 1, 1:n + 1] for kind in KINDS}  # [heads, words]
                for kind in KINDS:
                    add(f"entropy_{kind}", _entropy(p[kind]).sum())
                add("total_variation", 0.5 * (p["tree"] - p["local"]).abs().sum(0).sum())
                add("argmax_differs", (p["tree"].argmax(0) != p["local"].argmax(0)).sum())
                if heads is not None:
                    g = heads[b, 1:n + 1]
                    known = g >= 0
                    for kind in KINDS:
                        picked = p[kind].gather(0, g.clamp(min=0).unsqueeze(0)).squeeze(0)
                        add(f"gold_mass_{kind}", picked[known].sum())
                        add(f"argmax_is_gold_{kind}", (p[kind].argmax(0) == g)[known].sum())
                    add("gold_words", known.sum())
                words += n
    gold_words = sums.pop("gold_words", 0.0)
    out = {"words": words}
    for key, value in sums.items():
        out[key] = value / max(gold_words if key.startswith(("gold_", "argmax_is_gold")) else words, 1)
    return out


def measure(name: str, sentences: Optional[int] = None) -> Dict:
    suite = SUITES[name]
    if suite.teacher_type != "parser":
        raise SystemExit(f"suite {name} has no parsing teacher")
    owner, model_file, teacher = finished_teacher(suite, RUNS)
    corpus = load_corpus(suite.corpus)
    text = next((s.unlabelled for s in suite.students if s.unlabelled), None)
    splits = {"dev": (list(corpus.dev), True)}
    if text is not None:
        splits["unlabelled"] = (list(load_corpus(text).train), False)
    out = {"suite": owner, "teacher": f"{owner}/teacher/{model_file.name}", "temperature": 1.0,
           "command": f"python -m experiments.arc_marginals {name}"
                      + (f" --sentences {sentences}" if sentences else "")}
    return measure_splits(out, {split: (lambda items=items, gold=gold: compare(
        teacher, items[:sentences] if sentences else items, gold)) for split, (items, gold) in splits.items()},
        RESULTS / owner / "arc_marginals.json")


def main(argv=None):
    cli(__doc__, measure, argv, sentences="the first N sentences of each split")


if __name__ == "__main__":
    sys.exit(main())
