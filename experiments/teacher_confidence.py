"""How sure is a suite's teacher on the sentences it trained on, against sentences it never saw?

A teacher that memorised its training split hands a KD student near-one-hot targets there: with all gold data,
KD on the training split then says little more than the gold labels. This measures, per split, the teacher's
mean token entropy of its exact CRF marginals (nats, at T=1 and at T=2 as the reference tempers them), the
token accuracy of its best labels, its mean marginal of the gold label and how its best spans meet the gold spans
(exact, another type, other boundaries, missed, spurious), and writes
``experiments/results/<suite>/teacher_confidence.json``.

    python -m experiments.teacher_confidence ner_de ner_en

A routed suite (``crossfit_en``) measures its training sentences only, each with the teacher that annotates it.
"""
from __future__ import annotations

import sys
from typing import Dict, List

import torch

from skd_flair.distill.temperature import temper
from skd_flair.training.corpora import load_corpus, part_of

from .common import RESULTS, RUNS
from .suites import SUITES
from .teacher_measure import cli, finished_teacher, measure_splits


def _split_confidence(teacher, sentences: List, batch: int = 32) -> Dict[str, float]:
    sums = {"entropy_t1": 0.0, "entropy_t2_local": 0.0, "correct": 0.0, "gold_prob": 0.0}
    tokens = 0
    names = teacher.label_dictionary.get_items()
    with torch.no_grad():
        for start in range(0, len(sentences), batch):
            chunk = [s for s in sentences[start:start + batch] if len(s)]
            chunk.sort(key=len, reverse=True)
            scores = teacher.teacher_scores(chunk).without_special()
            gold_tags = teacher._gold_tags(chunk, scores.emissions.shape[1])  # BIOES ids of the gold spans
            for sentence in chunk:
                sentence.clear_embeddings()
            index = {name: i for i, name in enumerate(scores.labels)}
            marginals = scores.marginals(1.0)
            for key, m in (("entropy_t1", marginals), ("entropy_t2_local", temper(marginals, 2.0))):
                p = m.unary
                sums[key] += float(-(torch.where(p > 0, p * p.log(), p.new_zeros(()))).sum())
            p = marginals.unary
            best = p.argmax(-1)
            for b, sentence in enumerate(chunk):
                for i in range(len(sentence)):
                    gold = index.get(names[int(gold_tags[b, i])])
                    if gold is None:
                        continue
                    sums["correct"] += float(best[b, i] == gold)
                    sums["gold_prob"] += float(p[b, i, gold])
                tokens += len(sentence)
    return {"tokens": tokens, **{k: v / max(tokens, 1) for k, v in sums.items()}}


def _span_agreement(teacher, sentences: List, batch: int = 32) -> Dict[str, int]:
    """The teacher's best spans (Viterbi) against the gold spans: every gold span is found exactly, found with
    another type, overlapped with other boundaries, or missed; a predicted span that overlaps no gold span is
    spurious."""
    name = "skd_teacher_best"
    teacher.predict(sentences, mini_batch_size=batch, label_name=name)
    counts = {"gold": 0, "predicted": 0, "exact": 0, "wrong_type": 0, "wrong_boundary": 0, "missed": 0,
              "spurious": 0}

    def bounds(sentence, label_type):  # a span holding both kinds of label: span.tag would read the first
        return {(span.tokens[0].idx, span.tokens[-1].idx): span.get_label(label_type).value
                for span in sentence.get_spans(label_type)}

    for sentence in sentences:
        gold, predicted = bounds(sentence, teacher.label_type), bounds(sentence, name)
        sentence.remove_labels(name)
        sentence.clear_embeddings()
        counts["gold"] += len(gold)
        counts["predicted"] += len(predicted)
        for (a, b), tag in gold.items():
            if (a, b) in predicted:
                counts["exact" if predicted[(a, b)] == tag else "wrong_type"] += 1
            elif any(c <= b and a <= d for c, d in predicted):
                counts["wrong_boundary"] += 1
            else:
                counts["missed"] += 1
        counts["spurious"] += sum(not any(a <= d and c <= b for a, b in gold) for c, d in predicted)
    return counts


def _pooled(parts: List[Dict]) -> Dict:
    """Several measurements of disjoint sentences as one: rates weighted by tokens, span counts summed."""
    tokens = sum(p["tokens"] for p in parts)
    out = {"tokens": tokens, **{k: sum(p[k] * p["tokens"] for p in parts) / max(tokens, 1)
                                for k in parts[0] if k not in ("tokens", "spans")}}
    out["spans"] = {k: sum(p["spans"][k] for p in parts) for k in parts[0]["spans"]}
    return out


def measure_routed(name: str) -> Dict:
    """A routed suite's KD targets on its training sentences: each part's sentences measured with the teacher that
    annotates them (cross-fitting: the teacher of the other half), pooled, and per part."""
    suite = SUITES[name]
    train = list(load_corpus(suite.corpus).train)
    out = {"suite": name, "teachers": dict(suite.routes),
           "command": f"python -m experiments.teacher_confidence {name}"}

    def routed():
        per_part = {}
        for part, owner in suite.routes.items():
            _, _, teacher = finished_teacher(SUITES[owner], RUNS)
            share = [s for s in train if part_of(s) == part]
            per_part[part] = {**_split_confidence(teacher, share), "spans": _span_agreement(teacher, share)}
        return {**_pooled(list(per_part.values())), "parts": per_part}

    return measure_splits(out, {"train": routed}, RESULTS / name / "teacher_confidence.json")


def measure(name: str) -> Dict:
    suite = SUITES[name]
    if suite.routes:
        return measure_routed(name)
    owner, model_file, teacher = finished_teacher(suite, RUNS)
    corpus = load_corpus(suite.corpus)
    out = {"suite": owner, "teacher": f"{owner}/teacher/{model_file.name}",
           "command": f"python -m experiments.teacher_confidence {name}"}
    def both(split):
        sentences = list(getattr(corpus, split))
        return {**_split_confidence(teacher, sentences), "spans": _span_agreement(teacher, sentences)}

    return measure_splits(out, {split: (lambda split=split: both(split)) for split in ("train", "dev", "test")},
                          RESULTS / owner / "teacher_confidence.json")


def main(argv=None):
    cli(__doc__, measure, argv)


if __name__ == "__main__":
    sys.exit(main())
