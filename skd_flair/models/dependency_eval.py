"""Attachment scores (UAS / LAS) for dependency parsers and for parsing as sequence labelling.

Every word counts, punctuation included (as UD's CoNLL 2018 evaluation and the reference code do); the
scores without punctuation are reported beside them (a word is punctuation when its UD ``upos`` label is
``PUNCT``, or, without a ``upos`` layer, when every character of it is a Unicode punctuation character).
A predicted head of None (no head, e.g. an offset outside the sentence without repair) is always wrong.
Relations are compared as whole strings (``nmod:poss`` is not ``nmod``).
"""
from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from flair.data import Dictionary, Sentence, Token
from flair.training_utils import Result

from .eval_loop import eval_mode, inference_batches

__all__ = ["is_punctuation", "gold_tree", "AttachmentScores", "attachment_result", "is_well_formed",
           "write_parses", "EvaluatesTrees"]

METRICS = ("las", "uas", "las_nopunct", "uas_nopunct")


def is_punctuation(token: Token, upos_type: str = "upos") -> bool:
    """UD ``upos == PUNCT`` when the token has a ``upos`` label, else: all characters are punctuation."""
    labels = token.get_labels(upos_type)
    if labels:
        return labels[0].value == "PUNCT"
    text = token.text
    return bool(text) and all(unicodedata.category(ch).startswith("P") for ch in text)


def gold_tree(sentence: Sentence, relation_type: str = "dependency") -> Tuple[List[Optional[int]], List[Optional[str]]]:
    """Gold heads (``token.head_id``; None where missing or outside 0..n) and relations (None where missing)."""
    n = len(sentence)
    heads, rels = [], []
    for token in sentence:
        h = token.head_id
        heads.append(h if isinstance(h, int) and 0 <= h <= n and h != token.idx else None)
        labels = token.get_labels(relation_type)
        rels.append(labels[0].value if labels else None)
    return heads, rels


def is_well_formed(heads: Sequence[Optional[int]], single_root: bool = True) -> bool:
    """True when ``heads`` (``heads[i-1]`` = head of word i, 0 = root) is a tree over the words."""
    n = len(heads)
    if any(h is None or not 0 <= h <= n for h in heads):
        return False
    if any(h == i for i, h in enumerate(heads, start=1)):
        return False
    roots = sum(h == 0 for h in heads)
    if roots == 0 or (single_root and roots != 1):
        return False
    state = [0] * (n + 1)  # 0 unseen, 1 on the path, 2 reaches the root
    state[0] = 2
    for start in range(1, n + 1):
        path, v = [], start
        while state[v] == 0:
            state[v] = 1
            path.append(v)
            v = heads[v - 1]
        if state[v] == 1:
            return False
        for u in path:
            state[u] = 2
    return True


@dataclass
class AttachmentScores:
    """Counts for UAS and LAS, with and without punctuation, and for well-formed outputs."""

    words: int = 0
    heads: int = 0
    labelled: int = 0
    words_np: int = 0
    heads_np: int = 0
    labelled_np: int = 0
    sentences: int = 0
    well_formed: int = 0
    extra: Dict[str, float] = field(default_factory=dict)

    def add(self, sentence: Sentence, pred_heads: Sequence[Optional[int]], pred_rels: Sequence[Optional[str]],
            relation_type: str = "dependency", single_root: bool = True) -> None:
        gold_heads, gold_rels = gold_tree(sentence, relation_type)
        self.sentences += 1
        self.well_formed += int(is_well_formed(pred_heads, single_root))
        for token, gh, gr, ph, pr in zip(sentence, gold_heads, gold_rels, pred_heads, pred_rels):
            if gh is None:
                continue  # no gold head: the word is not scored
            head_ok = ph is not None and ph == gh
            label_ok = head_ok and pr is not None and pr == gr
            self.words += 1
            self.heads += head_ok
            self.labelled += label_ok
            if not is_punctuation(token):
                self.words_np += 1
                self.heads_np += head_ok
                self.labelled_np += label_ok

    def scores(self) -> Dict[str, float]:
        div = lambda a, b: a / b if b else 0.0  # noqa: E731
        return {"uas": div(self.heads, self.words), "las": div(self.labelled, self.words),
                "uas_nopunct": div(self.heads_np, self.words_np), "las_nopunct": div(self.labelled_np, self.words_np),
                "well_formed": div(self.well_formed, self.sentences), "words": self.words,
                "words_nopunct": self.words_np, "sentences": self.sentences}

    def line(self, name: str) -> str:
        s = self.scores()
        return (f"{name:<22} UAS {100 * s['uas']:6.2f}  LAS {100 * s['las']:6.2f}  |  without punctuation: UAS "
                f"{100 * s['uas_nopunct']:6.2f}  LAS {100 * s['las_nopunct']:6.2f}  |  well-formed trees "
                f"{100 * s['well_formed']:6.2f}%")


def main_metric_name(requested: Optional[Tuple[str, str]], default: str) -> str:
    """The metric to select models on: Flair's ``main_evaluation_metric`` when it names one of ours (e.g.
    ``("parsing", "uas_nopunct")``), else the model's own default."""
    if requested is not None:
        for part in reversed(tuple(requested)):
            if isinstance(part, str) and part.lower() in METRICS:
                return part.lower()
    if default not in METRICS:
        raise ValueError(f"main metric must be one of {METRICS}, got {default!r}")
    return default


def attachment_result(main: AttachmentScores, loss: float, main_metric: str = "las",
                      others: Optional[Dict[str, AttachmentScores]] = None, title: str = "parsing",
                      extra: Optional[Dict[str, float]] = None) -> Result:
    """A Flair `Result`: ``main_score`` = the main scorer's `main_metric`; ``scores`` holds every metric of
    every scorer (the others prefixed by their name) and the loss; a readable table as detailed results."""
    scores: Dict[str, float] = {"loss": loss}
    scores.update({k: v for k, v in main.scores().items()})
    lines = [f"{title}: {main.words} words in {main.sentences} sentences (main score: {main_metric})",
             main.line("result")]
    for name, scorer in (others or {}).items():
        scores.update({f"{name}_{k}": v for k, v in scorer.scores().items()})
        lines.append(scorer.line(name))
    if extra:
        scores.update(extra)
        lines.append("  ".join(f"{k} {v:.4f}" for k, v in extra.items()))
    return Result(main_score=main.scores()[main_metric], detailed_results="\n".join(lines), scores=scores)


def write_parses(path: Union[str, Path], rows: List[List[Tuple]]) -> None:
    """A CoNLL-style file: per word ``id form gold_head gold_rel pred_head pred_rel``; blank line between
    sentences."""
    with open(path, "w", encoding="utf-8") as f:
        for sentence_rows in rows:
            for row in sentence_rows:
                f.write("\t".join("_" if x is None else str(x) for x in row) + "\n")
            f.write("\n")


Trees = List[Tuple[Sequence[Optional[int]], Sequence[Optional[str]]]]


class EvaluatesTrees:
    """Flair's ``evaluate`` for every model that predicts dependency trees (the biaffine parser, the parsing
    taggers): attachment scores of the trees of each decoding mode, the first mode's being the main scores.

    A model provides ``_evaluation_modes(repairs)`` (its main decoding first) and
    ``_evaluate_batch(batch, modes, return_loss) -> (loss sum, words, {mode: [(heads, rels)] per sentence},
    counters)``; the counters are summed over batches and turned into extra scores by ``_evaluation_extra``.
    """

    single_root: bool = True
    relation_type: str
    main_metric: str

    @property
    def evaluation_label_type(self) -> str:
        """The gold labels evaluation reads (besides ``head_id``): the relations, whatever the model's own label
        type (a parsing tagger predicts offset tags, which a treebank does not carry)."""
        return self.relation_type

    def _evaluation_modes(self, repairs: Optional[Sequence[str]]) -> List[str]:
        raise NotImplementedError

    def _evaluate_batch(self, batch: List[Sentence], modes: List[str], return_loss: bool
                        ) -> Tuple[float, int, Dict[str, Trees], Dict[str, int]]:
        raise NotImplementedError

    def _evaluation_extra(self, counters: Counter) -> Dict[str, float]:
        return {}

    def _evaluation_title(self) -> str:
        return type(self).__name__

    def evaluate(self, data_points, gold_label_type: Optional[str] = None, out_path: Union[str, Path, None] = None,
                 embedding_storage_mode="none", mini_batch_size: int = 32,
                 main_evaluation_metric: Tuple[str, str] = ("micro avg", "f1-score"),
                 exclude_labels: Optional[List[str]] = None, gold_label_dictionary: Optional[Dictionary] = None,
                 return_loss: bool = True, repairs: Optional[Sequence[str]] = None, **kwargs) -> Result:
        """UAS / LAS (with and without punctuation) against the tokens' ``head_id`` and relation labels, for the
        main decoding and each other mode (`repairs`, where the model has them); ``main_score`` is the main
        metric (Flair's ``main_evaluation_metric`` when it names one of ours, else the model's). The gold
        annotation is left untouched."""
        modes = self._evaluation_modes(repairs)
        scorers = {m: AttachmentScores() for m in modes}
        total_loss, count, counters, rows = 0.0, 0, Counter(), []
        with eval_mode(self):
            for batch in inference_batches(data_points, mini_batch_size, False, embedding_storage_mode):
                loss, words, trees, batch_counters = self._evaluate_batch(batch, modes, return_loss)
                total_loss, count = total_loss + loss, count + words
                counters.update(batch_counters)
                for mode in modes:
                    for sentence, (heads, rels) in zip(batch, trees[mode]):
                        scorers[mode].add(sentence, heads, rels, self.relation_type, self.single_root)
                        if mode == modes[0] and out_path is not None:
                            gh, gr = gold_tree(sentence, self.relation_type)
                            rows.append([(i, t.text, gh[i - 1], gr[i - 1], heads[i - 1], rels[i - 1])
                                         for i, t in enumerate(sentence, start=1)])
        if out_path is not None:
            write_parses(out_path, rows)
        metric = main_metric_name(main_evaluation_metric, self.main_metric)
        others = {("norepair" if m == "none" else m): scorers[m] for m in modes[1:]}
        return attachment_result(scorers[modes[0]], total_loss / max(count, 1), metric, others,
                                 title=self._evaluation_title(), extra=self._evaluation_extra(counters))
