"""Offline teacher resources for the non-English experiments (German, Dutch, Spanish, Portuguese).

    python -m experiments.resources [--langs de nl es pt] [--lm-max-epochs 6] [--lm-minutes M]

No German, Dutch, Spanish or Portuguese fastText vectors or Flair character LMs can be downloaded on these
machines, so this script makes small ones from the training portions of the corpora in ``../shared/data``, and
the data splits the experiments need. Everything is cached OUTSIDE git under ``CACHE / "experiments"``
(``$SKD_FLAIR_CACHE`` or ``~/.cache/skd_flair``); the figures go to ``experiments/results/resources.json`` as
``{lang: {resource: {figure: value}}}`` (rendered by ``experiments/report.py``).

=====================  =======================================================================================
resource               what
=====================  =======================================================================================
``data/wikiann_pt``    WikiANN Portuguese ``all.txt`` (20,000 sentences) split by a seeded shuffle into train
                       16,000 (the student's unlabelled text), dev 1,000, test 3,000; ``pt:`` prefixes stripped;
                       ``token TAB tag`` with a blank line after each sentence (source order kept in each split)
``data/wikiann_XX``    XX = de, en, nl: the first 5,000 train, 1,000 dev and 1,000 test sentences of WikiANN,
                       prefixes stripped (the zero-shot multilingual teacher's data)
``text/XX.txt``        raw text from TRAINING portions only, one sentence a line, tokens joined by spaces:
                       de = WikiANN de train, nl / es = CoNLL-2002 train (column 0, ``-DOCSTART-`` skipped),
                       pt = the 16,000-sentence pt train split
``fasttext-XX.kv``     gensim ``FastText`` vectors (CBOW, gensim's default) with subword n-grams, saved
                       as one ``FastTextKeyedVectors`` file (``model.wv.save``); load with embedding type
                       ``fasttext``
``lm-XX-forward.pt``   Flair character language models (``LanguageModel``, LSTM 1x256, char embedding 64),
``lm-XX-backward.pt``  trained with Flair's ``LanguageModelTrainer`` on ``text/XX.txt`` (5% of the lines held
                       out as valid / test), time-boxed; load with ``FlairEmbeddings(path)`` (256 dims each)
=====================  =======================================================================================

Resumable: each resource has a marker ``figures/<lang>.<resource>.json`` written after the resource itself
(every file is written under a temporary name and renamed when complete); a resource whose files and marker
exist, and whose marker records the same build settings, is not rebuilt. ``resource_path(lang, kind)`` gives
the paths for ``experiments/suites.py``.

Choices the brief left open, recorded here: fastText ``bucket`` is 200,000 (gensim's default 2,000,000 would
make every file, and every saved model that holds these embeddings, 800 MB, for corpora with fewer than 100,000
distinct n-grams of in-vocabulary words); the LM is trained one epoch per ``LanguageModelTrainer.train`` call
(``max_epochs`` = the next epoch, the model, best loss and learning rate carried over, as Flair's own checkpoint
resume does), for ``--lm-max-epochs`` epochs (6): a fixed number of epochs, not a time budget, so the same
command trains the same LM on another machine or under another load (the Dutch teacher of 2026-12-02 was lost
to a budget: its LMs ran 6 epochs on a busy machine, 16-17 on an idle one, and could not be trained again as they
were); ``--lm-minutes`` adds a budget that stops after the epoch in which it runs out. The learning-rate schedule (Flair's
defaults: SGD at 20, quartered after 10 validations without improvement) is kept across those calls by one
``ReduceLROnPlateau`` outside the trainer.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

os.environ.setdefault("OMP_NUM_THREADS", "1")

from .common import CACHE, RESULTS, SHARED, read_json, write_json  # noqa: E402


LANGS = ("de", "nl", "es", "pt")
SEED = 1
VERSION = 1  # bump when an output format changes, so old cache entries are rebuilt

PT_SPLIT = {"train": 16_000, "dev": 1_000, "test": 3_000}
WIKIANN_SLICE = {"train": 5_000, "dev": 1_000, "test": 1_000}
WIKIANN_SLICE_LANGS = ("de", "en", "nl")

FASTTEXT = {"vector_size": 100, "window": 5, "min_count": 2, "min_n": 3, "max_n": 6, "epochs": 10, "workers": 1,
            "seed": SEED, "bucket": 200_000}
LM_MODEL = {"hidden_size": 256, "nlayers": 1, "embedding_size": 64, "dropout": 0.1}
LM_TRAIN = {"sequence_length": 100, "mini_batch_size": 64, "learning_rate": 20.0, "anneal_factor": 0.25,
            "patience": 10, "clip": 0.25}
LM_HELD_OUT_EVERY = 20  # one line in 20 (5%) held out; alternately valid.txt and test.txt
LM_SPLIT_CHARS = 250_000  # characters per training split file (validation and best-model check after each)
LM_MINUTES: Optional[float] = None  # no time budget: the epoch count alone says how long an LM trains
LM_EPOCHS = 6
KINDS = ("fasttext", "fasttext300", "lm-forward", "lm-backward", "text", "wikiann")


# --------------------------------------------------------------------------------------------------- paths


def root() -> Path:
    return CACHE / "experiments"


def resource_path(lang: Optional[str], kind: str) -> str:
    """The path (a string, for configurations) of a resource built here.

    kinds: ``fasttext`` (``fasttext-<lang>.kv``, embedding type ``fasttext``; ``fasttext300``: the same with 300
    dimensions, ``fasttext-<lang>-300d.kv``, built on demand by :func:`build_fasttext`), ``lm-forward`` / ``lm-backward``
    (``lm-<lang>-<direction>.pt``, embedding type ``flair``), ``text`` (``text/<lang>.txt``, corpus type ``text``)
    and ``wikiann`` or ``wikiann_<lang>`` (the folder ``data/wikiann_<lang>`` with train/dev/test.txt, corpus
    type ``column`` with ``column_format {0: text, 1: ner}``; lang may then be None)."""
    if kind.startswith("wikiann_"):
        named = kind[len("wikiann_"):]
        if lang is not None and lang != named:
            raise ValueError(f"resource kind {kind!r} is for language {named!r}, not {lang!r}")
        lang, kind = named, "wikiann"
    if not lang:
        raise ValueError(f"resource kind {kind!r} needs a language")
    base = root()
    if kind == "fasttext":
        return str(base / f"fasttext-{lang}.kv")
    if kind == "fasttext300":
        return str(base / f"fasttext-{lang}-300d.kv")
    if kind in ("lm-forward", "lm-backward"):
        return str(base / f"lm-{lang}-{kind[3:]}.pt")
    if kind == "text":
        return str(base / "text" / f"{lang}.txt")
    if kind == "wikiann":
        return str(base / "data" / f"wikiann_{lang}")
    raise ValueError(f"unknown resource kind {kind!r}; known: {', '.join(KINDS)}, wikiann_<lang>")


def _marker(lang: str, name: str) -> Path:
    return root() / "figures" / f"{lang}.{name}.json"


def _done(lang: str, name: str, settings: Dict, *paths: Path) -> Optional[Dict]:
    """The recorded figures when the resource is complete and was built with `settings`, else None."""
    record = read_json(_marker(lang, name))
    if record is None or record.get("settings") != json.loads(json.dumps(settings)):
        return None
    if not all(Path(p).exists() for p in paths):
        return None
    return record["figures"]


def _finish(lang: str, name: str, settings: Dict, figures: Dict) -> Dict:
    write_json(_marker(lang, name), {"settings": settings, "figures": figures})
    _publish(lang, name, figures)
    return figures


def _publish(lang: str, name: str, figures: Dict):
    path = RESULTS / "resources.json"
    data = read_json(path) or {}
    data.setdefault(lang, {})[name] = figures
    write_json(path, {k: dict(sorted(v.items())) for k, v in sorted(data.items())})


def _atomic_write(path: Path, text: str):
    from skd_flair.training import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]


def _say(message: str):
    print(f"[resources {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------------- reading


Sentence = List[Tuple[str, str]]


def _strip(token: str, prefix: Optional[str]) -> str:
    if prefix and token.startswith(prefix) and len(token) > len(prefix):
        return token[len(prefix):]
    return token


def read_column(path: Path, prefix: Optional[str] = None, tab: bool = False, tag_column: int = -1
                ) -> Iterator[Sentence]:
    """Sentences of a column file as (token, tag) lists; ``-DOCSTART-`` sentences skipped; a token `prefix`
    (WikiANN's ``pt:``) stripped. `tab`: fields are tab-separated (WikiANN), else whitespace-separated."""
    sentence: Sentence = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            body = line.rstrip("\r\n")
            if not body.strip():
                if sentence:
                    yield sentence
                    sentence = []
                continue
            fields = body.split("\t") if tab else body.split()
            if len(fields) < 2 or not fields[0]:
                raise ValueError(f"{path}, line {lineno}: expected a token and a tag, got {body!r}")
            if fields[0] == "-DOCSTART-":
                continue
            sentence.append((_strip(fields[0], prefix), fields[tag_column]))
    if sentence:
        yield sentence


def _conll(sentences: Sequence[Sentence]) -> str:
    return "".join("".join(f"{token}\t{tag}\n" for token, tag in s) + "\n" for s in sentences)


def _split_figures(splits: Dict[str, Sequence[Sentence]]) -> Dict:
    figures = {}
    for split, sentences in splits.items():
        figures[f"{split}_sentences"] = len(sentences)
        figures[f"{split}_tokens"] = sum(len(s) for s in sentences)
    return figures


def _write_splits(folder: Path, splits: Dict[str, Sequence[Sentence]]):
    for split, sentences in splits.items():
        _atomic_write(folder / f"{split}.txt", _conll(sentences))


# --------------------------------------------------------------------------------------------------- 1. data


def build_wikiann_pt() -> Dict:
    """WikiANN pt ``all.txt`` split by a seeded shuffle into train / dev / test (sizes ``PT_SPLIT``)."""
    source = SHARED / "ner" / "wikiann" / "pt" / "all.txt"
    folder = Path(resource_path("pt", "wikiann"))
    settings = {"version": VERSION, "source_sha1": _sha1(source), "sizes": PT_SPLIT, "seed": SEED}
    files = [folder / f"{s}.txt" for s in PT_SPLIT]
    done = _done("pt", "wikiann_pt", settings, *files)
    if done is not None:
        _publish("pt", "wikiann_pt", done)
        return done
    sentences = list(read_column(source, prefix="pt:", tab=True))
    need = sum(PT_SPLIT.values())
    if len(sentences) < need:
        raise ValueError(f"{source} has {len(sentences)} sentences, the split needs {need}")
    order = list(range(len(sentences)))
    random.Random(SEED).shuffle(order)
    splits, start = {}, 0
    for split, size in PT_SPLIT.items():
        splits[split] = [sentences[i] for i in sorted(order[start:start + size])]  # source order kept
        start += size
    _write_splits(folder, splits)
    train_texts = {" ".join(t for t, _ in s) for s in splits["train"]}
    figures = {**_split_figures(splits),
               "test_sentences_also_in_train": sum(" ".join(t for t, _ in s) in train_texts for s in splits["test"]),
               "source_sentences": len(sentences)}
    _say(f"wikiann_pt: {figures}")
    return _finish("pt", "wikiann_pt", settings, figures)


def build_wikiann_slice(lang: str) -> Dict:
    """The first ``WIKIANN_SLICE`` sentences of each WikiANN split of `lang`, prefixes stripped."""
    source = SHARED / "ner" / "wikiann" / lang
    folder = Path(resource_path(lang, "wikiann"))
    settings = {"version": VERSION, "sizes": WIKIANN_SLICE,
                "source_sha1": {s: _sha1(source / f"{s}.txt") for s in WIKIANN_SLICE}}
    name = f"wikiann_{lang}"
    done = _done(lang, name, settings, *[folder / f"{s}.txt" for s in WIKIANN_SLICE])
    if done is not None:
        _publish(lang, name, done)
        return done
    splits = {}
    for split, size in WIKIANN_SLICE.items():
        sentences = []
        for sentence in read_column(source / f"{split}.txt", prefix=f"{lang}:", tab=True):
            if len(sentences) == size:
                break
            sentences.append(sentence)
        if len(sentences) < size:
            raise ValueError(f"{source / split}.txt has {len(sentences)} sentences, {size} asked")
        splits[split] = sentences
    _write_splits(folder, splits)
    figures = _split_figures(splits)
    _say(f"{name}: {figures}")
    return _finish(lang, name, settings, figures)


# --------------------------------------------------------------------------------------------------- 2. text


def text_source(lang: str) -> Tuple[Path, Optional[str], bool]:
    """(file, token prefix, tab-separated) of the training text of `lang`: training portions only."""
    if lang == "de":
        return SHARED / "ner" / "wikiann" / "de" / "train.txt", "de:", True
    if lang in ("nl", "es"):
        return SHARED / "ner" / f"conll02_{lang}" / "train.txt", None, False
    if lang == "pt":
        return Path(resource_path("pt", "wikiann")) / "train.txt", None, True
    raise ValueError(f"no training text configured for language {lang!r}; known: {', '.join(LANGS)}")


def build_text(lang: str) -> Dict:
    if lang == "pt":
        build_wikiann_pt()
    source, prefix, tab = text_source(lang)
    target = Path(resource_path(lang, "text"))
    settings = {"version": VERSION, "source": source.name, "source_sha1": _sha1(source)}
    done = _done(lang, "text", settings, target)
    if done is not None:
        _publish(lang, "text", done)
        return done
    lines = [" ".join(token for token, _ in s) for s in read_column(source, prefix=prefix, tab=tab)]
    text = "".join(line + "\n" for line in lines)
    _atomic_write(target, text)
    figures = {"sentences": len(lines), "tokens": sum(len(line.split()) for line in lines),
               "characters": len(text), "source": str(source.relative_to(SHARED)) if source.is_relative_to(SHARED)
               else f"wikiann_{lang} train split"}
    _say(f"text {lang}: {figures}")
    return _finish(lang, "text", settings, figures)


def _text_lines(lang: str) -> List[str]:
    return [line for line in Path(resource_path(lang, "text")).read_text(encoding="utf-8").split("\n") if line]


# --------------------------------------------------------------------------------------------------- 3. fastText


def build_fasttext(lang: str, dim: int = FASTTEXT["vector_size"]) -> Dict:
    """fastText vectors of `dim` dimensions (100: kind ``fasttext``; 300: kind ``fasttext300``, the larger word
    table the stalling-students issue asks to measure) on the language's text."""
    from gensim.models import FastText

    build_text(lang)
    name = "fasttext" if dim == FASTTEXT["vector_size"] else f"fasttext{dim}"
    params = {**FASTTEXT, "vector_size": dim}
    text = Path(resource_path(lang, "text"))
    target = Path(resource_path(lang, name))
    settings = {"version": VERSION, "params": params, "text_sha1": _sha1(text)}
    done = _done(lang, name, settings, target)
    if done is not None:
        _publish(lang, name, done)
        return done
    sentences = [line.split() for line in _text_lines(lang)]
    _say(f"fasttext {lang}: training on {len(sentences)} sentences ...")
    start = time.perf_counter()
    model = FastText(**params)
    model.build_vocab(corpus_iterable=sentences)
    model.train(corpus_iterable=sentences, total_examples=len(sentences), epochs=model.epochs)
    seconds = time.perf_counter() - start
    from skd_flair.training import atomic_path

    with atomic_path(target) as tmp:
        model.wv.save(str(tmp), separately=[])  # one file: the vectors and the n-gram matrix pickled inside
    figures = {"vocabulary": len(model.wv.key_to_index), "sentences": len(sentences),
               "tokens": sum(len(s) for s in sentences), "train_seconds": round(seconds, 2),
               "dim": dim, "bucket": params["bucket"], "file_mb": round(target.stat().st_size / 2 ** 20, 1)}
    _say(f"{name} {lang}: {figures}")
    return _finish(lang, name, settings, figures)


# --------------------------------------------------------------------------------------------------- 4. char LMs


def make_lm_corpus(lines: Sequence[str], folder: Path) -> Dict:
    """Flair's ``TextCorpus`` layout in `folder`: ``train/split_NNN.txt`` (about ``LM_SPLIT_CHARS`` characters
    each), ``valid.txt`` and ``test.txt`` (every ``LM_HELD_OUT_EVERY``-th line, alternately). Built in a
    temporary folder and renamed into place."""
    train, valid, test = [], [], []
    for i, line in enumerate(lines):
        if i % LM_HELD_OUT_EVERY == LM_HELD_OUT_EVERY // 2:
            (valid if (i // LM_HELD_OUT_EVERY) % 2 == 0 else test).append(line)
        else:
            train.append(line)
    tmp = folder.with_name(folder.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "train").mkdir(parents=True)
    chunk: List[str] = []
    size = splits = 0
    for line in train:
        chunk.append(line)
        size += len(line) + 1
        if size >= LM_SPLIT_CHARS:
            splits += 1
            (tmp / "train" / f"split_{splits:03d}.txt").write_text("\n".join(chunk) + "\n", encoding="utf-8")
            chunk, size = [], 0
    if chunk:
        splits += 1
        (tmp / "train" / f"split_{splits:03d}.txt").write_text("\n".join(chunk) + "\n", encoding="utf-8")
    (tmp / "valid.txt").write_text("\n".join(valid) + "\n", encoding="utf-8")
    (tmp / "test.txt").write_text("\n".join(test) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return {"train_lines": len(train), "valid_lines": len(valid), "test_lines": len(test), "splits": splits,
            "train_chars": sum(len(line) + 1 for line in train)}


def char_dictionary(train_folder: Path):
    """Character dictionary (with ``<unk>``) of the training split files: most frequent first, ties by code
    point. Never ``Dictionary.load("chars")``, which downloads."""
    from flair.data import Dictionary

    counts: Counter = Counter()
    for path in sorted(train_folder.iterdir()):
        counts.update(path.read_text(encoding="utf-8"))
    dictionary = Dictionary(add_unk=True)
    for char, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        dictionary.add_item(char)
    return dictionary


def _trainer_class():
    from flair.trainers.language_model_trainer import LanguageModelTrainer

    class RecordingTrainer(LanguageModelTrainer):
        """Flair's trainer, recording every loss that ``evaluate`` returns (the validation after each split,
        then the final test evaluation of each ``train`` call)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.evaluations: List[float] = []

        def evaluate(self, data_source, eval_batch_size, sequence_length):
            loss = super().evaluate(data_source, eval_batch_size, sequence_length)
            self.evaluations.append(float(loss))
            return loss

    return RecordingTrainer


def train_lm(corpus_folder: Path, out: Path, forward: bool, minutes: Optional[float], max_epochs: int = LM_EPOCHS
             ) -> Dict:
    """Train one character LM with Flair's ``LanguageModelTrainer``, one epoch per ``train`` call, for
    `max_epochs` epochs, or until the epoch in which `minutes` (None: no budget) run out ends. Writes ``out/best-lm.pt``, ``loss.txt``,
    ``training.log``; returns figures."""
    import flair
    import torch
    from flair.models import LanguageModel
    from flair.trainers.language_model_trainer import TextCorpus
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    shutil.rmtree(out, ignore_errors=True)
    flair.set_seed(SEED)
    random.seed(SEED)
    dictionary = char_dictionary(corpus_folder / "train")
    corpus = TextCorpus(corpus_folder, dictionary, forward=forward, character_level=True)
    model = LanguageModel(dictionary, is_forward_lm=forward, **LM_MODEL)
    Trainer = _trainer_class()
    # the learning-rate schedule across the per-epoch calls (the trainer's own one restarts with each call)
    lr_holder = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LM_TRAIN["learning_rate"])
    schedule = ReduceLROnPlateau(lr_holder, factor=LM_TRAIN["anneal_factor"], patience=LM_TRAIN["patience"])
    best, epoch, start = 10_000.0, 0, time.perf_counter()
    deadline = None if minutes is None else start + minutes * 60
    valid_history: List[float] = []
    while epoch < max_epochs:
        trainer = Trainer(model, corpus, epoch=epoch, loss=best)
        trainer.train(out, sequence_length=LM_TRAIN["sequence_length"],
                      learning_rate=lr_holder.param_groups[0]["lr"], mini_batch_size=LM_TRAIN["mini_batch_size"],
                      anneal_factor=LM_TRAIN["anneal_factor"], patience=10 ** 9, clip=LM_TRAIN["clip"],
                      max_epochs=epoch + 1, checkpoint=False, num_workers=0)
        valid = trainer.evaluations[:-1]  # the last one is the trainer's final test evaluation
        if not valid:
            raise RuntimeError(f"LM training in {out} ran no split (is {corpus_folder / 'train'} empty?)")
        valid_history += valid
        for loss in valid:
            schedule.step(loss)
        best = min(best, *valid)
        epoch += 1
        elapsed = time.perf_counter() - start
        _say(f"  {out.name}: epoch {epoch} valid ppl {math.exp(min(valid)):.3f} (best {math.exp(best):.3f}), "
             f"{elapsed:.0f}s")
        if deadline is not None and time.perf_counter() >= deadline:
            break
    seconds = time.perf_counter() - start
    for checkpoint in out.glob("epoch_*.pt"):
        checkpoint.unlink()
    best_model = LanguageModel.load_language_model(out / "best-lm.pt")
    evaluator = Trainer(best_model, corpus)
    test_data = evaluator._batchify(corpus.test, LM_TRAIN["mini_batch_size"])
    test_loss = evaluator.evaluate(test_data, LM_TRAIN["mini_batch_size"], LM_TRAIN["sequence_length"])
    return {"valid_ppl": round(math.exp(best), 4), "test_ppl": round(math.exp(test_loss), 4), "epochs": epoch,
            "validations": len(valid_history), "train_seconds": round(seconds, 1),
            "final_learning_rate": lr_holder.param_groups[0]["lr"], "char_vocabulary": len(dictionary)}


def build_lm(lang: str, direction: str, minutes: Optional[float] = LM_MINUTES, max_epochs: int = LM_EPOCHS) -> Dict:
    import torch
    from flair.data import Sentence as FlairSentence
    from flair.embeddings import FlairEmbeddings

    build_text(lang)
    text = Path(resource_path(lang, "text"))
    kind = f"lm-{direction}"
    target = Path(resource_path(lang, kind))
    settings = {"version": VERSION, "model": LM_MODEL, "train": LM_TRAIN, "held_out_every": LM_HELD_OUT_EVERY,
                "split_chars": LM_SPLIT_CHARS, "text_sha1": _sha1(text), "seed": SEED}
    done = _done(lang, kind, settings, target)
    if done is not None:
        _publish(lang, kind, done)
        return done
    torch.set_num_threads(1)
    lm_root = root() / "lm"
    corpus_folder = lm_root / f"{lang}-corpus"
    layout = make_lm_corpus(_text_lines(lang), corpus_folder)
    _say(f"{kind} {lang}: {layout}; training for {max_epochs} epochs"
         + (f" or {minutes:g} minutes, whichever ends first ..." if minutes is not None else " ..."))
    out = lm_root / f"{lang}-{direction}"
    figures = train_lm(corpus_folder, out, forward=direction == "forward", minutes=minutes, max_epochs=max_epochs)
    from skd_flair.training import atomic_path

    with atomic_path(target) as tmp:
        shutil.copyfile(out / "best-lm.pt", tmp)
    embedding = FlairEmbeddings(str(target))  # it must load and embed as Flair embeddings
    sentence = FlairSentence("Ein kurzer Satz .")
    embedding.embed(sentence)
    if sentence[0].get_embedding().shape[0] != embedding.embedding_length:
        raise RuntimeError(f"{target} did not embed a sentence")
    figures = {**figures, "train_chars": layout["train_chars"], "train_splits": layout["splits"],
               "embedding_length": embedding.embedding_length, "budget_minutes": minutes,
               "max_epochs": max_epochs}
    _say(f"{kind} {lang}: {figures}")
    return _finish(lang, kind, settings, figures)


# --------------------------------------------------------------------------------------------------- main


def build_all(langs: Sequence[str], lm_minutes: Optional[float] = LM_MINUTES, lm_max_epochs: int = LM_EPOCHS,
              steps: Sequence[str] = ("data", "text", "fasttext", "lm")) -> Dict:
    for lang in langs:
        text_source(lang)  # unknown language: fail before any work
    if "data" in steps:
        for lang in WIKIANN_SLICE_LANGS:
            build_wikiann_slice(lang)
        build_wikiann_pt()
    if "text" in steps:
        for lang in langs:
            build_text(lang)
    if "fasttext" in steps:
        for lang in langs:
            build_fasttext(lang)
    if "lm" in steps:
        for lang in langs:
            for direction in ("forward", "backward"):
                build_lm(lang, direction, lm_minutes, lm_max_epochs)
    return read_json(RESULTS / "resources.json") or {}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--langs", nargs="+", default=list(LANGS), choices=LANGS)
    parser.add_argument("--lm-minutes", type=float, default=LM_MINUTES,
                        help="a time budget per character LM on top of the epochs: training stops after the epoch "
                             "in which it runs out (the LM then depends on the machine's speed)")
    parser.add_argument("--lm-max-epochs", type=int, default=LM_EPOCHS, help="epochs per character LM")
    parser.add_argument("--steps", nargs="+", default=["data", "text", "fasttext", "lm"],
                        choices=["data", "text", "fasttext", "lm"])
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        raise SystemExit(f"the real data folder {SHARED} is absent; set SKD_SHARED_DATA to it")
    import torch

    torch.set_num_threads(1)
    _say(f"building {', '.join(args.langs)} into {root()}")
    start = time.perf_counter()
    figures = build_all(args.langs, args.lm_minutes, args.lm_max_epochs, args.steps)
    _say(f"done in {time.perf_counter() - start:.0f}s; figures in {RESULTS / 'resources.json'}")
    return figures


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    main(sys.argv[1:])
