"""Corpora from configuration.

``load_corpus(spec)`` turns ``{"type": ..., ...}`` into a ``flair.data.Corpus`` built with Flair's own readers.

Registered types (``CORPORA.names()``):

=======  ==============================================================================================
column   CoNLL column files through ``ColumnCorpus``, checked first: a missing folder or file, or a line
         whose column count differs from ``column_format``, is a ConfigError naming the file and line;
         ``-DOCSTART-`` sentences dropped (default) or kept as Flair document boundaries; an optional
         per-token prefix such as WikiANN's ``en:`` stripped into a cleaned copy in the cache
ud       CoNLL-U treebanks through Flair's ``UniversalDependenciesDataset`` (the reader behind
         ``UniversalDependenciesCorpus``): multiword ranges and empty nodes skipped, heads kept in
         ``Token.head_id``, relations as the ``dependency`` label; lines checked first
flair    a Flair dataset class by name (``CONLL_03``, ``WNUT_17``, ``UD_ENGLISH``, ...) with ``kwargs``;
         these download when the user has internet
text     unlabelled sentences for KD on raw text: one sentence a line, whitespace-tokenised or through Flair's
         tokenizer (``tokenize: true``); a split may be a file, a directory or a glob pattern
         (``format: plain``), or the token column of a column file with its labels dropped
concat   several corpora (``corpora: [spec, ...]``, each any type) as one: each split is the concatenation
         (``ConcatDataset``) of the members' splits, in the order given; a member without that split adds nothing
=======  ==============================================================================================

Every type also takes ``sample_train`` / ``sample_dev`` / ``sample_test`` (keep the first k sentences of the
split, after missing splits are sampled; 0 drops the split), ``skip_train`` (drop the first k training sentences
first: with ``sample_train: k`` elsewhere, the rest of a training file becomes unlabelled text), ``sample_missing_splits`` (Flair's: a missing dev or
test split is a random 10% of train) and ``seed`` (the seed of that random split, so a corpus is always the same).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import flair.datasets
from flair.data import Corpus, Sentence, _iter_dataset
from flair.datasets import ColumnCorpus, FlairDatapointDataset
from flair.datasets.base import find_train_dev_test_files
from flair.datasets.treebanks import UniversalDependenciesDataset
from flair.tokenization import SegtokTokenizer
from torch.utils.data import ConcatDataset, Dataset, Subset

from ..models.kd_student import UNLABELLED
from ..registry import ConfigError, Registry, check_keys, with_keys
from .corpus_files import DOCSTART, check_conllu_file, prepared_column_files, span_tag_schemes
from .lazy_text import LazyTextDataset, PlainLines

log = logging.getLogger("skd_flair")

CORPORA = Registry("corpus")
register_corpus = CORPORA.register

DEFAULT_SEED = 42
SPLITS = ("train", "dev", "test")
PART = "corpus"  # sentence metadata: the name of the `concat` member a sentence came from


def part_of(sentence) -> Optional[str]:
    """The name of the `concat` part a sentence came from, or None."""
    return sentence.get_metadata(PART) if sentence.has_metadata(PART) else None


def load_corpus(spec: Union[Mapping[str, Any], str]) -> Corpus:
    """Build a Flair ``Corpus`` from ``{"type": <registered type>, ...}``."""
    return CORPORA.build(spec, where="corpus")


# ---------------------------------------------------------------------------------------------------------------
# shared pieces


def _where(kind: str) -> str:
    return f"corpus (type '{kind}')"


def _existing_dir(value: Any, key: str, where: str) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise ConfigError(f"{where}: '{key}' must be a folder path, got {value!r}")
    path = Path(value).expanduser()
    if not path.exists():
        raise ConfigError(f"{where}: {key} '{path}' does not exist")
    if not path.is_dir():
        raise ConfigError(f"{where}: {key} '{path}' is not a folder")
    return path


def _split_files(folder: Optional[Path], files: Dict[str, Optional[str]], autofind: bool,
                 where: str) -> Dict[str, Optional[Path]]:
    """Resolve train/dev/test files (relative to `folder` when given); explicit files must exist. With no
    explicit train file and `autofind`, Flair's own rule finds them by name (train/dev/test/testa/testb)."""
    for split, name in files.items():
        if name is not None and not isinstance(name, (str, Path)):
            raise ConfigError(f"{where}: {split}_file must be a file name or path, got {name!r}")

    def resolve(split: str, name) -> Path:
        path = (folder / name if folder is not None else Path(name)).expanduser().absolute()
        if not path.is_file():
            raise ConfigError(f"{where}: {split}_file '{path}' does not exist" if not path.exists()
                              else f"{where}: {split}_file '{path}' is not a file")
        return path

    resolved = {split: None if name is None else resolve(split, name) for split, name in files.items()}
    if folder is not None and resolved["train"] is None and autofind:
        dev, test, train = find_train_dev_test_files(folder, None, None, None, True)
        resolved = {"train": train, "dev": resolved["dev"] or dev, "test": resolved["test"] or test}
    if not any(resolved.values()):
        raise ConfigError(f"{where}: no train, dev or test file given or found"
                          + (f" in '{folder}'" if folder is not None else ""))
    return {split: Path(p).absolute() if p is not None else None for split, p in resolved.items()}


def _check_sample(value: Any, key: str, where: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: {key} must be a non-negative integer, got {value!r}")
    return value


def _first(dataset: Optional[Dataset], k: Optional[int]) -> Optional[Dataset]:
    if dataset is None or k is None:
        return dataset
    if k == 0:
        return None
    return Subset(dataset, list(range(min(k, len(dataset)))))


def _skip(dataset: Optional[Dataset], k: Optional[int]) -> Optional[Dataset]:
    if dataset is None or not k:
        return dataset
    return Subset(dataset, list(range(min(k, len(dataset)), len(dataset))))


def _leave_out_fold(dataset: Optional[Dataset], spec: Optional[Mapping[str, Any]], where: str) -> Optional[Dataset]:
    """The training sentences outside fold ``spec["fold"]`` of ``spec["folds"]``: whole documents are dealt to
    the folds in turn (a document: a run of sentences Flair links as neighbours, as it does between CoNLL
    ``-DOCSTART-`` lines), single sentences where the split has no document boundaries. A teacher trained on all
    but fold i annotates fold i without having seen its labels (cross-fitting, ``kd.cross_fit``)."""
    if dataset is None or spec is None:
        return dataset
    if not isinstance(spec, Mapping) or set(spec) != {"folds", "fold"}:
        raise ConfigError(f"{where}: leave_out_fold must be a mapping {{folds: K, fold: i}}, got {spec!r}")
    folds, fold = spec["folds"], spec["fold"]
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"{where}: leave_out_fold.folds must be an integer >= 2, got {folds!r}")
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ConfigError(f"{where}: leave_out_fold.fold must be an integer from 0 to {folds - 1}, got {fold!r}")
    sentences = [dataset[i] for i in range(len(dataset))]
    starts = [i == 0 or sentences[i]._previous_sentence is not sentences[i - 1] for i in range(len(sentences))]
    documents = sum(starts) > 1
    unit, keep = -1, []
    for i, start in enumerate(starts):
        unit += 1 if start or not documents else 0
        if unit % folds != fold:
            keep.append(i)
    return Subset(dataset, keep)


def _sampling(skip_train: Optional[int] = None, sample_train: Optional[int] = None, sample_dev: Optional[int] = None,
              sample_test: Optional[int] = None, seed: Optional[int] = DEFAULT_SEED,
              leave_out_fold: Optional[Dict[str, int]] = None):
    """The sampling keys every corpus type takes (see `_finish`)."""


def _finish(where: str, train: Optional[Dataset], dev: Optional[Dataset], test: Optional[Dataset], name: str,
            sample_missing_splits: Union[bool, str], seed: Optional[int] = DEFAULT_SEED,
            skip_train: Optional[int] = None, sample_train: Optional[int] = None, sample_dev: Optional[int] = None,
            sample_test: Optional[int] = None, leave_out_fold: Optional[Dict[str, int]] = None) -> Corpus:
    """Sample missing splits (seeded), drop the first `skip_train` training sentences (e.g. those another
    configuration uses as labelled data), then keep the first k sentences of each split, then leave out one fold
    of the training sentences (`leave_out_fold`)."""
    train = _skip(train, _check_sample(skip_train, "skip_train", where))
    ks = [_check_sample(v, f"sample_{s}", where) for v, s in zip((sample_train, sample_dev, sample_test), SPLITS)]
    splits = [d if d is not None and len(d) > 0 else None for d in (train, dev, test)]
    if not any(splits):
        raise ConfigError(f"{where}: the corpus '{name}' has no sentences")
    corpus = Corpus(*splits, name=name, sample_missing_splits=sample_missing_splits, random_seed=seed)
    splits = [_first(d, k) for d, k in zip((corpus.train, corpus.dev, corpus.test), ks)]
    splits[0] = _leave_out_fold(splits[0], leave_out_fold, where)
    if not any(d is not None and len(d) > 0 for d in splits):
        raise ConfigError(f"{where}: sampling left the corpus '{name}' with no sentences")
    return Corpus(*splits, name=name, sample_missing_splits=False)


def _is_docstart(sentence: Sentence, token: str) -> bool:
    return len(sentence) == 1 and sentence[0].text == token


def drop_docstart_sentences(dataset: Optional[Dataset], token: str = DOCSTART) -> Optional[Dataset]:
    """The dataset without its one-token `token` sentences. For in-memory data the neighbours of a removed
    sentence are unlinked, so Flair's context features (``use_context``) stop at document boundaries."""
    if dataset is None:
        return None
    sentences = [dataset[i] for i in range(len(dataset))]
    marks = [_is_docstart(s, token) for s in sentences]
    if not any(marks):
        return dataset
    for i, is_doc in enumerate(marks):
        if is_doc:
            if i > 0 and sentences[i - 1]._next_sentence is sentences[i]:
                sentences[i - 1]._next_sentence = None
            if i + 1 < len(sentences) and sentences[i + 1]._previous_sentence is sentences[i]:
                sentences[i + 1]._previous_sentence = None
    keep = [i for i, is_doc in enumerate(marks) if not is_doc]
    for i in keep:
        sentences[i]._has_context = True
    return Subset(dataset, keep)


def _column_splits(folder: Path, fmt: Dict[int, str], files: Dict[str, Optional[Path]], name: str,
                   drop_docstart: bool, **options) -> List[Optional[Dataset]]:
    """[train, dev, test] of Flair's `ColumnCorpus` over exactly these files (no split found or sampled by
    Flair), without the document-separator sentences when `drop_docstart`."""
    corpus = ColumnCorpus(folder, fmt, train_file=files["train"], dev_file=files["dev"], test_file=files["test"],
                          autofind_splits=False, name=name, sample_missing_splits=False, **options)
    splits = [corpus.train, corpus.dev, corpus.test]
    docstart = options.get("document_separator_token")
    if drop_docstart and docstart:
        splits = [drop_docstart_sentences(d, docstart) for d in splits]
    return splits


def _column_format(value: Any, where: str) -> Dict[int, str]:
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = [(i, v) for i, v in enumerate(value) if v is not None]
    else:
        raise ConfigError(f"{where}: column_format must be a mapping {{column: name}} or a list of names, "
                          f"got {value!r}")
    fmt: Dict[int, str] = {}
    for key, name in items:
        try:
            column = int(key)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: column_format key {key!r} is not a column number") from None
        if column < 0:
            raise ConfigError(f"{where}: column_format key {key!r} is negative")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: column_format[{key!r}] must be a non-empty name, got {name!r}")
        if name in fmt.values():
            raise ConfigError(f"{where}: column_format names '{name}' twice")
        fmt[column] = name
    if not fmt:
        raise ConfigError(f"{where}: column_format is empty")
    return fmt


# ---------------------------------------------------------------------------------------------------------------
# column


@CORPORA.register("column")
@with_keys(_sampling)
def column(
    data_folder: str,
    column_format: Union[Mapping[Any, str], Sequence[Optional[str]]],
    train_file: Optional[str] = None,
    dev_file: Optional[str] = None,
    test_file: Optional[str] = None,
    autofind_splits: bool = True,
    column_delimiter: str = r"\s+",
    comment_symbol: Optional[str] = None,
    encoding: str = "utf-8",
    skip_first_line: bool = False,
    docstart: Optional[str] = DOCSTART,
    drop_docstart: bool = True,
    strip_prefix: Optional[str] = None,
    allow_extra_columns: bool = False,
    label_name_map: Optional[Dict[str, str]] = None,
    in_memory: bool = True,
    name: Optional[str] = None,
    sample_missing_splits: Union[bool, str] = True,
    **sampling,
) -> Corpus:
    """CoNLL column files through Flair's ``ColumnCorpus``.

    `column_format` maps column numbers to names (``{0: text, 1: ner}``, or the list ``[text, ner]``). Every
    token line must have exactly ``max(column)+1`` columns (at least, with `allow_extra_columns`).
    `docstart` lines (``-DOCSTART-``) are dropped as sentences when `drop_docstart`, else kept as Flair document
    boundaries. `strip_prefix` removes a per-token prefix (``en:``). `comment_symbol` is off by default, unlike
    Flair's ``"# "``, which silently drops a ``#`` token of a space-separated file."""
    where = _where("column")
    fmt = _column_format(column_format, where)
    folder = _existing_dir(data_folder, "data_folder", where)
    files = _split_files(folder, {"train": train_file, "dev": dev_file, "test": test_file}, autofind_splits, where)
    files = prepared_column_files(where, files, fmt, not allow_extra_columns, column_delimiter, comment_symbol,
                                   encoding, skip_first_line, docstart, strip_prefix)
    first = next(path for path in files.values() if path is not None)
    for label, scheme in span_tag_schemes(first, fmt, column_delimiter, comment_symbol, encoding,
                                          skip_first_line).items():
        if scheme == "BIO":
            log.info(f"{where}: the '{label}' column holds BIO tags; Flair reads them as spans, and a tagger "
                     "(model.tag_format: BIOES, the default) learns and predicts them as BIOES tags (S-, B-, E-, I-): "
                     "predict writes BIOES")
    splits = _column_splits(folder, fmt, files, name or str(folder), drop_docstart, comment_symbol=comment_symbol,
                            column_delimiter=column_delimiter, encoding=encoding, skip_first_line=skip_first_line,
                            document_separator_token=docstart, label_name_map=label_name_map, in_memory=in_memory)
    return _finish(where, *splits, name=name or str(folder), sample_missing_splits=sample_missing_splits,
                   **sampling)


# ---------------------------------------------------------------------------------------------------------------
# ud


@CORPORA.register("ud")
@with_keys(_sampling)
def ud(
    data_folder: str,
    train_file: Optional[str] = None,
    dev_file: Optional[str] = None,
    test_file: Optional[str] = None,
    autofind_splits: bool = True,
    in_memory: bool = True,
    split_multiwords: bool = True,
    name: Optional[str] = None,
    sample_missing_splits: Union[bool, str] = True,
    **sampling,
) -> Corpus:
    """A CoNLL-U treebank read by Flair's ``UniversalDependenciesDataset`` (as ``UniversalDependenciesCorpus``
    does, but with a seeded split when dev or test is missing). Tokens carry ``head_id`` (1-based, 0 = root) and
    the labels ``dependency``, ``upos``, ``pos``, ``lemma`` and the features. Keep `split_multiwords` on: with it
    off Flair does not renumber heads."""
    where = _where("ud")
    folder = _existing_dir(data_folder, "data_folder", where)
    files = _split_files(folder, {"train": train_file, "dev": dev_file, "test": test_file}, autofind_splits, where)
    datasets: List[Optional[Dataset]] = []
    for split in SPLITS:
        path = files[split]
        if path is None:
            datasets.append(None)
            continue
        if check_conllu_file(path, where) == 0:
            raise ConfigError(f"{where}: {split}_file '{path}' holds no sentences")
        datasets.append(UniversalDependenciesDataset(path, in_memory=in_memory, split_multiwords=split_multiwords))
    return _finish(where, *datasets, name=name or str(folder), sample_missing_splits=sample_missing_splits,
                   **sampling)


# ---------------------------------------------------------------------------------------------------------------
# flair


@CORPORA.register("flair")
@with_keys(_sampling)
def flair_dataset(
    dataset: str,
    kwargs: Optional[Mapping[str, Any]] = None,
    docstart: Optional[str] = DOCSTART,
    drop_docstart: bool = True,
    **sampling,
) -> Corpus:
    """A dataset class of ``flair.datasets`` by name (``CONLL_03``, ``WNUT_17``, ``UD_ENGLISH``, ...), built with
    `kwargs` (e.g. ``{base_path: ...}``); Flair downloads it when it can. `seed` is unused here (Flair's classes
    split missing splits themselves); it is accepted so every corpus type takes the same common keys."""
    where = _where("flair")
    cls = getattr(flair.datasets, str(dataset), None) if isinstance(dataset, str) else None
    if not isinstance(cls, type) or not issubclass(cls, Corpus):
        raise ConfigError(f"{where}: '{dataset}' is not a corpus class of flair.datasets (e.g. CONLL_03, WNUT_17, "
                          f"UD_ENGLISH)")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ConfigError(f"{where}: kwargs must be a mapping of {dataset} arguments, got {kwargs!r}")
    kwargs = dict(kwargs or {})
    check_keys(cls.__init__, kwargs, f"{where}: kwargs of {dataset}")
    try:
        corpus = cls(**kwargs)
    except ConfigError:
        raise
    except (OSError, ValueError, RuntimeError, AssertionError, KeyError) as err:
        raise ConfigError(f"{where}: building flair.datasets.{dataset} failed (it downloads its data unless the "
                          f"files are already in its base_path): {type(err).__name__}: {err}") from err
    splits = [corpus.train, corpus.dev, corpus.test]
    if drop_docstart and docstart:
        splits = [drop_docstart_sentences(d, docstart) for d in splits]
    return _finish(where, *splits, name=getattr(corpus, "name", str(dataset)), sample_missing_splits=False,
                   **sampling)


# ---------------------------------------------------------------------------------------------------------------
# text


_GLOB = set("*?[")


def _plain_files(folder: Optional[Path], name: Optional[str], split: str, where: str) -> List[Path]:
    """The files of one plain-text split: a file, every file of a directory, or a glob pattern (sorted, so
    the sentence order never depends on the file system)."""
    if name is None:
        return []
    if not isinstance(name, (str, Path)):
        raise ConfigError(f"{where}: {split}_file must be a file, directory or glob pattern, got {name!r}")
    path = (folder / name if folder is not None else Path(name)).expanduser().absolute()
    if _GLOB & set(str(name)):
        files = sorted(p for p in path.parent.glob(path.name) if p.is_file())
        if not files:
            raise ConfigError(f"{where}: {split}_file pattern '{path}' matches no file")
        return files
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ConfigError(f"{where}: {split}_file directory '{path}' holds no file")
        return files
    if not path.is_file():
        raise ConfigError(f"{where}: {split}_file '{path}' does not exist")
    return [path]


def plain_sentences(paths: Sequence[Path], lines: PlainLines) -> List[Sentence]:
    """One sentence per line of ``paths`` that makes one (see `lazy_text.PlainLines`)."""
    sentences = [Sentence(tokens) for path in paths for _, tokens in lines.scan(path)]
    if not sentences:
        raise lines.none_found(paths)
    return sentences


@CORPORA.register("text")
@with_keys(_sampling)
def text(
    train_file: Optional[str] = None,
    dev_file: Optional[str] = None,
    test_file: Optional[str] = None,
    data_folder: Optional[str] = None,
    format: str = "plain",
    tokenize: bool = False,
    text_column: int = 0,
    column_delimiter: str = r"\s+",
    comment_symbol: Optional[str] = None,
    encoding: str = "utf-8",
    docstart: Optional[str] = DOCSTART,
    drop_docstart: bool = True,
    strip_prefix: Optional[str] = None,
    name: Optional[str] = None,
    in_memory: bool = True,
    sample_missing_splits: Union[bool, str] = False,
    **sampling,
) -> Corpus:
    """Unlabelled sentences for KD on raw text. ``format: plain``: one sentence a line, split on whitespace, or
    with Flair's own tokenizer (``tokenize: true``, segtok) for untokenised text; blank lines (whitespace, a
    byte-order mark) are skipped, and a line that is not valid text in ``encoding`` is an error naming file and
    line. A plain split may be a file, a directory (its files, sorted) or a glob pattern (``news/*.txt``).
    ``format: column``: the `text_column` of a column file (blank lines between sentences), other columns
    dropped. Files are paths, relative to `data_folder` when it is given. No split is sampled by default.
    ``in_memory: false`` (plain format) reads each sentence from disk when training asks for it."""
    where = _where("text")
    if format not in ("plain", "column"):
        raise ConfigError(f"{where}: format must be 'plain' or 'column', got {format!r}")
    if isinstance(text_column, bool) or not isinstance(text_column, int) or text_column < 0:
        raise ConfigError(f"{where}: text_column must be a non-negative integer, got {text_column!r}")
    folder = _existing_dir(data_folder, "data_folder", where) if data_folder is not None else None
    if train_file is None and dev_file is None and test_file is None:
        raise ConfigError(f"{where}: give at least one of train_file, dev_file, test_file")
    if not isinstance(tokenize, bool):
        raise ConfigError(f"{where}: tokenize must be true or false, got {tokenize!r}")
    named = {"train": train_file, "dev": dev_file, "test": test_file}
    if format == "plain":
        if strip_prefix is not None and (not isinstance(strip_prefix, str) or not strip_prefix):
            raise ConfigError(f"{where}: strip_prefix must be a non-empty string such as 'en:', got {strip_prefix!r}")
        paths = {split: _plain_files(folder, named[split], split, where) for split in SPLITS}
        corpus_name = name or str(folder or next(p[0] for p in paths.values() if p))
        lines = PlainLines(encoding, comment_symbol, docstart, drop_docstart, strip_prefix,
                           SegtokTokenizer().tokenize if tokenize else None, where)
        datasets = [None if not paths[s] else LazyTextDataset(paths[s], lines) if not in_memory
                    else FlairDatapointDataset(plain_sentences(paths[s], lines)) for s in SPLITS]
    elif tokenize or not in_memory:
        raise ConfigError(f"{where}: {'tokenize' if tokenize else 'in_memory: false'} applies to format: plain "
                          f"(column files are tokenised already and read into memory)")
    else:
        files = _split_files(folder, named, False, where)
        corpus_name = name or str(folder or files["train"] or files["dev"] or files["test"])
        fmt = {text_column: "text"}
        files = prepared_column_files(where, files, fmt, False, column_delimiter, comment_symbol, encoding,
                                       False, docstart, strip_prefix)
        some = next(p for p in files.values() if p is not None)
        datasets = _column_splits(some.parent, fmt, files, corpus_name, drop_docstart, comment_symbol=comment_symbol,
                                  column_delimiter=column_delimiter, encoding=encoding,
                                  document_separator_token=docstart)
    for dataset in datasets:  # no gold labels: these sentences learn from a teacher alone (a lazy set marks its own)
        for sentence in () if dataset is None or isinstance(dataset, LazyTextDataset) else dataset:
            sentence.add_metadata(UNLABELLED, True)
    return _finish(where, *datasets, name=corpus_name, sample_missing_splits=sample_missing_splits, **sampling)


# ---------------------------------------------------------------------------------------------------------------
# concat


@CORPORA.register("concat")
@with_keys(_sampling)
def concat(
    corpora: Sequence[Mapping[str, Any]],
    name: Optional[str] = None,
    sample_missing_splits: Union[bool, str] = False,
    **sampling,
) -> Corpus:
    """Several corpora as one (e.g. the WikiANN training sets of several languages for one multilingual
    teacher). Every member spec is built with :func:`load_corpus` (with its own sampling keys); then train, dev
    and test are each the ``ConcatDataset`` of the members' splits, in the order given, skipping members that
    lack the split. The common keys (``sample_train``, ...) then apply to the concatenation; no missing split is
    sampled by default (each member samples its own). Every sentence records its member's ``name`` (the member
    spec's ``name`` key, else the corpus's own name) as the metadata ``"corpus"``: a teacher given
    ``corpus: <name>`` annotates only those sentences (per-language teachers routed into one student). Members
    must be read into memory (the default) for the record to stay on the sentences."""
    where = _where("concat")
    if isinstance(corpora, (str, bytes, Mapping)) or not isinstance(corpora, Sequence) or not corpora:
        raise ConfigError(f"{where}: corpora must be a non-empty list of corpus specs, got {corpora!r}")
    members: List[Corpus] = []
    for i, spec in enumerate(corpora):
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: corpora[{i}] must be a corpus spec mapping with a 'type' key, got {spec!r}")
        try:
            members.append(CORPORA.build(spec, where=f"{where}, corpora[{i}]"))
        except ConfigError as err:
            message = str(err)
            raise ConfigError(message if message.startswith(where) else f"{where}, corpora[{i}]: {message}") from err
    names = [str(spec.get("name") or getattr(member, "name", i)) for i, (spec, member) in
             enumerate(zip(corpora, members))]
    for member_name, member in zip(names, members):  # which part a sentence came from: a teacher's `corpus`
        for split in SPLITS:
            for sentence in _iter_dataset(getattr(member, split)):
                sentence.add_metadata(PART, member_name)
    splits: List[Optional[Dataset]] = []
    for split in SPLITS:
        parts = [getattr(member, split) for member in members]
        parts = [d for d in parts if d is not None and len(d) > 0]
        splits.append(ConcatDataset(parts) if parts else None)
    corpus_name = name or "+".join(str(getattr(member, "name", "corpus")) for member in members)
    return _finish(where, *splits, name=corpus_name, sample_missing_splits=sample_missing_splits, **sampling)
