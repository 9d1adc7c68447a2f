"""``skd-flair predict``: reading the sentences of a file and writing what a model predicts for them.

Input is aligned with output: a plain file gives one sentence per line, and a blank (or whitespace-, BOM-only)
line is an empty sentence that gets an empty block, never merged with its neighbours; a column file gives one
sentence per blank-line-separated block. Output formats:

- ``tsv``: ``token TAB tag`` lines, a blank line after each sentence (BIOES tags for span taggers);
- ``conll``: ``token TAB tag TAB score``, the probability of each token's tag;
- ``jsonl``: one JSON object per sentence: ``tokens``, ``tags``, ``scores`` and, for span taggers, ``spans``
  (``start``, ``end`` exclusive, ``type``, ``score``);
- ``conllu``: for parsers, CoNLL-U lines with the predicted HEAD and DEPREL (the default for parsers).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Tuple

from flair.data import Sentence

from ..registry import ConfigError
from . import atomic_path
from .lazy_text import decoded_lines

FORMATS = ("auto", "tsv", "conll", "jsonl", "conllu")
__all__ = ["FORMATS", "read_input", "predict_to_file"]


def read_input(path: Path, fmt: str, encoding: str = "utf-8") -> List[Optional[Sentence]]:
    """The sentences of `path` in order; None for an empty line of a plain file (an empty sentence)."""
    if fmt == "plain":
        return [Sentence(line.split()) if line else None for line in decoded_lines(path, encoding, "predict")]
    if fmt == "column":
        sentences, tokens = [], []
        for line in [*decoded_lines(path, encoding, "predict"), ""]:
            if line:
                tokens.append(line.split()[0])
            elif tokens:
                sentences.append(Sentence(tokens))
                tokens = []
        return sentences
    raise ConfigError(f"input format must be 'plain' or 'column', got {fmt!r}")


def _is_parser(model) -> bool:
    from ..models import BiaffineParser, DependencyTagger

    return isinstance(model, (BiaffineParser, DependencyTagger))


def _tags_scores_spans(model, sentence: Sentence) -> Tuple[List[str], List[Optional[float]], List[dict]]:
    """Tags (BIOES for a span tagger), per-token scores and spans; a span tagger's tokens carry their span's score
    and its O tokens none (Flair writes span labels only)."""
    label_type = model.label_type
    if not getattr(model, "predict_spans", False):
        labels = [token.get_label(label_type, "O") for token in sentence]
        return [label.value for label in labels], [float(label.score) for label in labels], []
    tags: List[str] = ["O"] * len(sentence)
    scores: List[Optional[float]] = [None] * len(sentence)
    spans = []
    for span in sentence.get_spans(label_type):
        idx = [t.idx - 1 for t in span]
        names = [f"S-{span.tag}"] if len(idx) == 1 else \
            [f"B-{span.tag}", *[f"I-{span.tag}"] * (len(idx) - 2), f"E-{span.tag}"]
        for i, name in zip(idx, names):
            tags[i], scores[i] = name, float(span.score)
        spans.append({"start": idx[0], "end": idx[-1] + 1, "type": span.tag, "score": round(float(span.score), 6)})
    return tags, scores, spans


def predict_to_file(model, sentences: List[Optional[Sentence]], output_path: Path, fmt: str = "auto",
                    batch_size: int = 32) -> int:
    """Predict the non-empty sentences and write every sentence, in order, in `fmt`; returns how many were
    written (empty ones included). The file is written atomically."""
    if fmt not in FORMATS:
        raise ConfigError(f"output format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    parser = _is_parser(model)
    if fmt == "auto":
        fmt = "conllu" if parser else "tsv"
    if (fmt == "conllu") != parser:
        raise ConfigError("output format conllu is for parsers (--type parser / dependency_tagger)" if not parser
                          else f"a parser's predictions are written as conllu, not {fmt}")
    real = [s for s in sentences if s is not None and len(s)]
    if real:
        model.predict(real, mini_batch_size=batch_size)
    blocks = []
    for sentence in sentences:
        if sentence is None or not len(sentence):
            blocks.append(json.dumps({"tokens": [], "tags": [], "scores": [], "spans": []}) if fmt == "jsonl" else "")
            continue
        if parser:
            rows = [f"{t.idx}\t{t.text}\t_\t_\t_\t_\t{t.head_id if t.head_id is not None else '_'}\t"
                    f"{t.get_label(model.label_type, '_').value}\t_\t_" for t in sentence]
            blocks.append("\n".join(rows) + "\n")
            continue
        tags, scores, spans = _tags_scores_spans(model, sentence)
        tokens = [t.text for t in sentence]
        if fmt == "jsonl":
            record = {"tokens": tokens, "tags": tags, "scores": [None if x is None else round(x, 6) for x in scores]}
            if getattr(model, "predict_spans", False):
                record["spans"] = spans
            blocks.append(json.dumps(record, ensure_ascii=False))
        elif fmt == "conll":
            blocks.append("\n".join(f"{w}\t{t}\t{'_' if s is None else f'{s:.4f}'}"
                                     for w, t, s in zip(tokens, tags, scores)) + "\n")
        else:
            blocks.append("\n".join(f"{w}\t{t}" for w, t in zip(tokens, tags)) + "\n")
    text = "\n".join(blocks) + ("\n" if blocks else "")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output_path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return len(sentences)
