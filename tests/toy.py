"""A tiny synthetic NER corpus (deterministic) and small models for integration tests."""
from __future__ import annotations

import random

import torch
from flair.data import Corpus, Sentence
from flair.datasets import FlairDatapointDataset
from flair.embeddings import OneHotEmbeddings

NAMES = {"Anna": "PER", "Bob": "PER", "Carla": "PER", "Berlin": "LOC", "Paris": "LOC", "Rome": "LOC",
         "Acme": "ORG", "Globex": "ORG"}
FILLER = "the a went to saw in with and from visited".split()


def sentences(n: int, seed: int, types=NAMES):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tokens, spans = [], []
        for _ in range(rng.randint(2, 8)):
            if rng.random() < 0.3:
                word = rng.choice(sorted(types))
                if rng.random() < 0.3:
                    tokens += [word, "Inc"]
                    spans.append((len(tokens) - 2, len(tokens), types[word]))
                else:
                    tokens.append(word)
                    spans.append((len(tokens) - 1, len(tokens), types[word]))
            else:
                tokens.append(rng.choice(FILLER))
        s = Sentence(tokens)
        for a, b, t in spans:
            s[a:b].add_label("ner", t)
        out.append(s)
    return out


def corpus(n_train=40, n_dev=10, n_test=10, seed=0, types=NAMES) -> Corpus:
    return Corpus(FlairDatapointDataset(sentences(n_train, seed, types)),
                  FlairDatapointDataset(sentences(n_dev, seed + 1, types)),
                  FlairDatapointDataset(sentences(n_test, seed + 2, types)))


def tagger(corpus: Corpus, use_crf=True, hidden=8, dim=8, seed=0, **kw):
    from skd_flair.models import DistillableTagger

    torch.manual_seed(seed)
    tags = corpus.make_label_dictionary("ner", add_unk=False)
    emb = OneHotEmbeddings.from_corpus(corpus, embedding_length=dim, min_freq=1)
    return DistillableTagger(emb, tags, "ner", use_crf=use_crf, hidden_size=hidden, **kw)


def write_column(path, sentences):
    """Sentences with NER spans as a two-column BIO file."""
    lines = []
    for s in sentences:
        tags = ["O"] * len(s)
        for span in s.get_spans("ner"):
            idx = [t.idx - 1 for t in span]
            tags[idx[0]] = "B-" + span.tag
            for i in idx[1:]:
                tags[i] = "I-" + span.tag
        lines += [f"{t.text} {tag}" for t, tag in zip(s, tags)] + [""]
    path.write_text("\n".join(lines) + "\n")


def attach_targets(sentences, targets):
    """Each sentence carries its teacher targets and is marked unlabelled, so a student's loss is the KD term alone."""
    from skd_flair.models.kd_student import KD_TARGETS, UNLABELLED

    for s in sentences:
        s.add_metadata(KD_TARGETS, targets.piece(s))
        s.add_metadata(UNLABELLED, True)
