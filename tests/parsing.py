"""Shared pieces of the parsing tests: treebank slices, tiny models, brute-force trees, a raw CoNLL-U reader."""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import List, Tuple

import pytest
import torch
from flair.data import Corpus, Dictionary, Sentence
from flair.datasets import FlairDatapointDataset
from flair.embeddings import OneHotEmbeddings

from tests import brute

SLICE = Path(__file__).resolve().parents[1] / "resources" / "data" / "ud_en_ewt"


def ud_slice() -> Corpus:
    """The bundled UD English-EWT slice, read afresh (skips the test when it is absent)."""
    if not (SLICE / "train.conllu").is_file():
        pytest.skip(f"the bundled treebank slice {SLICE} is absent")
    try:
        from skd_flair.training.corpora import load_corpus
    except ImportError:  # the corpus registry is optional here: Flair's own reader does the same
        from flair.datasets import UniversalDependenciesCorpus

        return UniversalDependenciesCorpus(SLICE, train_file="train.conllu", dev_file="dev.conllu",
                                           test_file="test.conllu")
    return load_corpus({"type": "ud", "data_folder": str(SLICE)})


def short(dataset, k: int, low: int = 2, high: int = 12) -> List[Sentence]:
    return [s for s in dataset if low <= len(s) <= high][:k]


def small_corpus(n_train=32, n_dev=8, n_test=8) -> Corpus:
    full = ud_slice()
    return Corpus(FlairDatapointDataset(short(full.train, n_train)), FlairDatapointDataset(short(full.dev, n_dev)),
                  FlairDatapointDataset(short(full.test, n_test)))


def parser(corpus: Corpus, seed=0, dim=16, relations=None, **kw):
    from skd_flair.models.parser import BiaffineParser

    torch.manual_seed(seed)
    rels = relations if relations is not None else corpus.make_label_dictionary("dependency", add_unk=True)
    emb = OneHotEmbeddings.from_corpus(corpus, embedding_length=dim, min_freq=1)
    args = dict(hidden_size=8, lstm_layers=1, arc_mlp=8, rel_mlp=8, sibling_mlp=4)
    args.update(kw)
    return BiaffineParser(emb, rels, **args)


def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.7):
    """Non-trivial scores from an untrained model (biaffine weights start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


# ---------------------------------------------------------------------------------------------- tiny inputs
WORDS = ["a", "b", "c", "d"]
RELATIONS = ["root", "nsubj", "obj"]


def tiny_corpus() -> Corpus:
    sents = [Sentence(WORDS), Sentence(WORDS[::-1])]
    return Corpus(FlairDatapointDataset(sents), FlairDatapointDataset(sents[:1]), FlairDatapointDataset(sents[:1]))


def tiny_relations(unk: bool = False) -> Dictionary:
    d = Dictionary(add_unk=unk)
    for r in RELATIONS:
        d.add_item(r)
    return d


def set_tree(sentence: Sentence, heads, rels):
    for token, h, r in zip(sentence, heads, rels):
        token.head_id = h
        token.set_label("dependency", r)
    return sentence


# ---------------------------------------------------------------------------------------------- brute force
def head_assignments(n: int):
    """Every assignment of a head to each word (no self-loops): the support of a head-selection model."""
    return [h for h in itertools.product(range(n + 1), repeat=n) if all(h[i] != i + 1 for i in range(n))]


def sibling_score(arcs: torch.Tensor, sibs, heads) -> torch.Tensor:
    """Arc scores plus adjacent-sibling scores: each head's dependents on each side, from the nearest out,
    score ``sibs[h, previous, d]`` (previous = h for the nearest)."""
    n = len(heads)
    total = sum(arcs[h, d] for d, h in enumerate(heads, start=1))
    if sibs is None:
        return total
    for h in range(n + 1):
        deps = [d for d in range(1, n + 1) if heads[d - 1] == h]
        for side in (sorted(d for d in deps if d > h), sorted((d for d in deps if d < h), reverse=True)):
            prev = h
            for d in side:
                total = total + sibs[h, prev, d]
                prev = d
    return total


def tree_distribution(arcs, sibs, n: int, projective: bool) -> Tuple[list, torch.Tensor]:
    """Every single-root tree over n words and its log-probability under arc (+ sibling) scores."""
    ts = brute.trees(n, projective, True)
    table = torch.stack([sibling_score(arcs, sibs, t) for t in ts])
    return ts, table - torch.logsumexp(table, 0)


def mfvi_loop(arcs, sibs, n: int, iterations: int) -> torch.Tensor:
    """Mean field written out with loops: ``Q[h, d]`` over heads 0..n of words 1..n (all-pairs siblings)."""

    def pair(h, s, d):
        if (h < s < d) or (d < s < h):
            return sibs[h, s, d]
        if (h < d < s) or (s < d < h):
            return sibs[h, d, s]
        return 0.0

    unary = [[float(arcs[h, d] + sibs[h, h, d]) for d in range(n + 1)] for h in range(n + 1)]

    def normalise(q):
        out = torch.zeros(n + 1, n + 1, dtype=torch.float64)
        for d in range(1, n + 1):
            heads = [h for h in range(n + 1) if h != d]
            m = max(q[h][d] for h in heads)
            z = sum(math.exp(q[h][d] - m) for h in heads)
            for h in heads:
                out[h, d] = math.exp(q[h][d] - m) / z
        return out

    Q = normalise(unary)
    for _ in range(iterations):
        q = [[unary[h][d] + sum(float(Q[h, s]) * float(pair(h, s, d)) for s in range(1, n + 1) if s not in (h, d))
              for d in range(n + 1)] for h in range(n + 1)]
        Q = normalise(q)
    return Q


# ---------------------------------------------------------------------------------------------- raw CoNLL-U
def read_conllu(path) -> Tuple[List[List[Tuple[str, int, str]]], int, int]:
    """(sentences as (form, head, deprel) per word, multiword range lines, empty node lines), read by hand."""
    sentences, current, ranges, empty = [], [], 0, 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                if current:
                    sentences.append(current)
                current = []
                continue
            if line.startswith("#"):
                continue
            cols = line.split("\t")
            if "-" in cols[0]:
                ranges += 1
                continue
            if "." in cols[0]:
                empty += 1
                continue
            current.append((cols[1], int(cols[6]), cols[7]))
    if current:
        sentences.append(current)
    return sentences, ranges, empty


def random_tree_scores(seed: int, scale: float, dtype: torch.dtype, sibling: bool = False):
    """Three sentences of 1..7 words: ``(lengths, arcs[, sibs])``, scores uniform in [-scale, scale] (drawn in
    float64, then cast), for property tests at extreme scales."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 8, (3,), generator=g)
    size = int(lengths.max()) + 1

    def draw(*shape):
        return ((torch.rand(3, *shape, generator=g, dtype=torch.float64) * 2 - 1) * scale).to(dtype)

    arcs = draw(size, size)
    return (lengths, arcs, draw(size, size, size)) if sibling else (lengths, arcs)


def assert_arc_marginals_normalised(marg: torch.Tensor, lengths: torch.Tensor, single_root: bool) -> float:
    """Every word has one head (and, with `single_root`, the root one dependent) in expectation; returns the
    tolerance used for the dtype."""
    size = marg.shape[-1]
    words = (torch.arange(size) >= 1) & (torch.arange(size).unsqueeze(0) <= lengths.unsqueeze(1))
    tol = 1e-9 if marg.dtype == torch.float64 else 1e-4
    torch.testing.assert_close(marg.sum(1), words.to(marg.dtype), atol=tol, rtol=0)
    if single_root:
        torch.testing.assert_close(marg[:, 0].sum(1), torch.ones(len(lengths), dtype=marg.dtype), atol=tol, rtol=0)
    return tol
