"""Corpora built from configuration: bundled slices, validation errors, -DOCSTART-, prefixes, text corpora."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

import flair.datasets  # noqa: E402
from flair.data import Corpus  # noqa: E402

from skd_flair import training  # noqa: E402
from skd_flair.registry import ConfigError  # noqa: E402
from skd_flair.training.corpora import CORPORA, load_corpus  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "resources" / "data"
WIKIANN = RESOURCES / "wikiann_en"
UD_SLICE = RESOURCES / "ud_en_ewt"
SHARED = Path(__file__).parents[1].parent / "shared" / "data"
NER = {0: "text", 1: "ner"}


def needs_shared(sub: str):
    """Mark a test that reads ../shared/data/<sub> (marker `data`); it skips when the folder is absent."""
    skip = pytest.mark.skipif(not (SHARED / sub).is_dir(), reason=f"../shared/data/{sub} is not available")
    return lambda test: pytest.mark.data(skip(test))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(training.CACHE_ENV, str(tmp_path / "cache"))


def column(folder, **extra):
    return load_corpus({"type": "column", "data_folder": str(folder), "column_format": NER, **extra})


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def sentences(dataset):
    return [dataset[i] for i in range(len(dataset))] if dataset is not None else []


def conllu_words(path: Path):
    """(form, head) of every word line (integer ID) per sentence, read independently of Flair."""
    result, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if current:
                result.append(current)
                current = []
            continue
        fields = line.split("\t")
        if line.startswith("#") or not fields[0].isdigit():
            continue
        assert int(fields[0]) == len(current) + 1
        current.append((fields[1], int(fields[6])))
    if current:
        result.append(current)
    return result


def assert_heads_match(corpus_split, path: Path):
    expected = conllu_words(path)
    got = sentences(corpus_split)
    assert len(got) == len(expected)
    for sentence, words in zip(got, expected):
        assert [(t.text, t.head_id) for t in sentence] == words
        for token in sentence:
            assert token.idx == sentence.tokens.index(token) + 1
            if token.head_id:
                assert token.get_head() is sentence[token.head_id - 1]


def test_registered_types():
    assert set(CORPORA.names()) >= {"column", "ud", "flair", "text", "concat"}


def test_bundled_wikiann_slice():
    corpus = column(WIKIANN)
    assert isinstance(corpus, Corpus)
    assert (len(corpus.train), len(corpus.dev), len(corpus.test)) == (400, 100, 100)
    assert set(corpus.make_label_dictionary("ner", add_unk=False).get_items()) == {"PER", "LOC", "ORG"}
    assert not any(t.text.startswith("en:") for s in sentences(corpus.train) for t in s)
    assert (WIKIANN / "ATTRIBUTION.md").exists()


def test_bundled_ud_slice_heads_match_the_file():
    corpus = load_corpus({"type": "ud", "data_folder": str(UD_SLICE)})
    assert (len(corpus.train), len(corpus.dev), len(corpus.test)) == (300, 100, 100)
    text = (UD_SLICE / "train.conllu").read_text(encoding="utf-8")
    assert "\n1-2\t" in text or any(line.split("\t")[0].count("-") for line in text.splitlines() if "\t" in line)
    assert any("." in line.split("\t")[0] for line in text.splitlines() if "\t" in line)  # empty nodes present
    for split in ("train", "dev", "test"):
        assert_heads_match(getattr(corpus, split), UD_SLICE / f"{split}.conllu")
    token = corpus.train[0][0]
    assert token.get_label("dependency").value == "root" and token.get_label("upos").value == "PROPN"
    assert (UD_SLICE / "LICENSE.txt").read_text(encoding="utf-8").startswith("Attribution-ShareAlike 4.0")


@needs_shared("ud/en_ewt")
def test_ud_en_ewt_dev_heads_are_right():
    folder = SHARED / "ud" / "en_ewt"
    corpus = load_corpus({"type": "ud", "data_folder": str(folder), "train_file": "en_ewt-ud-dev.conllu",
                          "sample_missing_splits": False})
    assert len(corpus.train) == 2001 and corpus.dev is None and corpus.test is None
    assert_heads_match(corpus.train, folder / "en_ewt-ud-dev.conllu")


def test_missing_folder_and_files_name_the_path(tmp_path):
    with pytest.raises(ConfigError, match="no/such/folder"):
        column(tmp_path / "no" / "such" / "folder")
    with pytest.raises(ConfigError, match="nothere.txt"):
        column(WIKIANN, train_file="nothere.txt")
    with pytest.raises(ConfigError, match="no train, dev or test file"):
        column(tmp_path)
    with pytest.raises(ConfigError, match="missing.conllu"):
        load_corpus({"type": "ud", "data_folder": str(UD_SLICE), "train_file": "missing.conllu"})
    with pytest.raises(ConfigError, match="nope.txt"):
        load_corpus({"type": "text", "train_file": str(tmp_path / "nope.txt")})


def test_wrong_column_count_names_file_and_line(tmp_path):
    path = write(tmp_path / "data" / "train.txt", "A\tB-PER\nb\tO\n\nc\tO\textra\n")
    with pytest.raises(ConfigError, match=r"train\.txt, line 4: expected 2 columns.*found 3.*allow_extra_columns"):
        column(path.parent)
    assert len(column(path.parent, allow_extra_columns=True, sample_missing_splits=False).train) == 2
    write(tmp_path / "short" / "train.txt", "A\tB-PER\n\nb\n")
    with pytest.raises(ConfigError, match=r"train\.txt, line 3: expected 2 columns.*found 1"):
        column(tmp_path / "short")
    write(tmp_path / "wide" / "dev.txt", "A B-PER\n")
    with pytest.raises(ConfigError, match=r"dev\.txt, line 1: expected 3 columns"):
        load_corpus({"type": "column", "data_folder": str(tmp_path / "wide"), "column_format": ["text", None, "ner"]})


def test_other_column_errors(tmp_path):
    write(tmp_path / "d" / "train.txt", "A\tO\n")
    for fmt, match in [({"x": "text"}, "not a column number"), ({0: "text", 1: "text"}, "twice"), ({}, "empty"),
                       ("text ner", "column_format: input should be a valid dictionary")]:
        with pytest.raises(ConfigError, match=match):
            load_corpus({"type": "column", "data_folder": str(tmp_path / "d"), "column_format": fmt})
    with pytest.raises(ConfigError, match="unknown key.*columns"):
        load_corpus({"type": "column", "data_folder": str(tmp_path / "d"), "column_format": NER, "columns": 2})
    with pytest.raises(ConfigError, match="missing required key.*column_format"):
        load_corpus({"type": "column", "data_folder": str(tmp_path / "d")})
    with pytest.raises(ConfigError, match="unknown corpus type 'conll'"):
        load_corpus({"type": "conll"})
    with pytest.raises(ConfigError, match="sample_train must be a non-negative integer"):
        column(tmp_path / "d", sample_train=-1)
    write(tmp_path / "e" / "train.txt", "")
    with pytest.raises(ConfigError, match="holds no sentences"):
        column(tmp_path / "e")


def test_bad_conllu_line_names_file_and_line(tmp_path):
    lines = (UD_SLICE / "dev.conllu").read_text(encoding="utf-8").splitlines()
    bad = next(i for i, line in enumerate(lines) if line[:1].isdigit())
    lines[bad] = lines[bad].replace("\t", " ", 1)
    write(tmp_path / "u" / "dev.conllu", "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=rf"dev\.conllu, line {bad + 1}: .*10 tab-separated"):
        load_corpus({"type": "ud", "data_folder": str(tmp_path / "u")})


DOCS = ("-DOCSTART- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\n\n"
        "-DOCSTART- -X- O\n\nBonn NNP B-LOC\n\n")


def test_docstart_dropped_and_documents_unlinked(tmp_path):
    write(tmp_path / "c" / "train.txt", DOCS)
    spec = {"type": "column", "data_folder": str(tmp_path / "c"), "column_format": {0: "text", 1: "pos", 2: "ner"},
            "sample_missing_splits": False}
    corpus = load_corpus(spec)
    got = sentences(corpus.train)
    assert [s.to_tokenized_string() for s in got] == ["EU rejects", "Peter", "Bonn"]
    assert got[0].previous_sentence() is None and got[0].next_sentence() is got[1]
    assert got[1].next_sentence() is None and got[2].previous_sentence() is None  # document boundary kept
    assert got[2].left_context(10) == []
    kept = sentences(load_corpus({**spec, "drop_docstart": False}).train)
    assert [s.to_tokenized_string() for s in kept] == ["-DOCSTART-", "EU rejects", "Peter", "-DOCSTART-", "Bonn"]
    assert kept[0].is_document_boundary and kept[3].is_document_boundary


def test_leave_out_fold_deals_whole_documents_or_single_sentences(tmp_path):
    docs = "".join("-DOCSTART- -X- O\n\n" + "".join(f"W{d}s{i} NNP B-PER\n\n" for i in range(d + 1))
                   for d in range(5))  # document d holds d + 1 sentences
    write(tmp_path / "c" / "train.txt", docs)
    spec = {"type": "column", "data_folder": str(tmp_path / "c"), "column_format": {0: "text", 1: "pos", 2: "ner"},
            "sample_missing_splits": False}
    texts = {fold: [s.to_tokenized_string() for s in sentences(load_corpus(
        {**spec, "leave_out_fold": {"folds": 2, "fold": fold}}).train)] for fold in (0, 1)}
    assert texts[1] == ["W0s0", "W2s0", "W2s1", "W2s2", "W4s0", "W4s1", "W4s2", "W4s3", "W4s4"]  # documents 0, 2, 4
    assert texts[0] == ["W1s0", "W1s1", "W3s0", "W3s1", "W3s2", "W3s3"]
    # no document boundaries: single sentences dealt in turn, after sampling
    flat = {**spec, "drop_docstart": False, "docstart": None, "sample_train": 7}
    kept = [s.to_tokenized_string() for s in sentences(load_corpus({**flat, "leave_out_fold": {"folds": 3,
                                                                                               "fold": 1}}).train)]
    everything = [s.to_tokenized_string() for s in sentences(load_corpus(flat).train)]
    assert kept == [t for i, t in enumerate(everything) if i % 3 != 1] and len(everything) == 7
    for bad, message in (({"folds": 1, "fold": 0}, "folds must be an integer >= 2"),
                         ({"folds": 2, "fold": 2}, "fold must be an integer from 0 to 1"),
                         ({"folds": 2}, r"leave_out_fold must be a mapping \{folds: K, fold: i\}")):
        with pytest.raises(ConfigError, match=message):
            load_corpus({**spec, "leave_out_fold": bad})


def test_bom_and_zero_width_lines_of_a_column_file_are_blank_lines(tmp_path, caplog):
    text = "EU B-ORG\nrejects O\n\ufeff\nPeter B-PER\n\u200b \n\nBonn B-LOC\n\ufeff\n"
    source = write(tmp_path / "c" / "train.txt", text)
    with caplog.at_level("WARNING", logger="skd_flair"):
        corpus = column(tmp_path / "c", sample_missing_splits=False)
    assert [s.to_tokenized_string() for s in sentences(corpus.train)] == ["EU rejects", "Peter", "Bonn"]
    assert "3 line(s)" in caplog.text and "line 3" in caplog.text
    assert source.read_text(encoding="utf-8") == text  # the user's file is left as it was
    with pytest.raises(ConfigError, match=r"train.txt, line 2: expected 2 columns"):  # a BOM is not a column
        write(tmp_path / "d" / "train.txt", "EU B-ORG\n\ufeffrejects\n")
        column(tmp_path / "d", sample_missing_splits=False)


@needs_shared("ner/conll03_en")
def test_conll03_docstart_from_shared_data():
    corpus = load_corpus({"type": "column", "data_folder": str(SHARED / "ner" / "conll03_en"),
                          "column_format": {0: "text", 1: "pos", 2: "np", 3: "ner"}, "train_file": "dev.txt",
                          "sample_missing_splits": False})
    assert len(corpus.train) == 3250  # README: 3,250 dev sentences, -DOCSTART- excluded


def test_prefix_stripped_into_a_cached_copy(tmp_path):
    source = write(tmp_path / "p" / "train.txt", "en:Anna\tB-PER\nen:en:x\tO\nen:\tO\nplain\tO\n\nen:Bonn\tB-LOC\n")
    corpus = column(source.parent, strip_prefix="en:", sample_missing_splits=False)
    assert [[t.text for t in s] for s in sentences(corpus.train)] == [["Anna", "en:x", "en:", "plain"], ["Bonn"]]
    copies = list((tmp_path / "cache" / "corpora").rglob("train.txt"))
    assert len(copies) == 1 and source.read_text(encoding="utf-8").startswith("en:Anna")  # source untouched
    stamp = copies[0].stat().st_mtime_ns
    column(source.parent, strip_prefix="en:", sample_missing_splits=False)
    assert copies[0].stat().st_mtime_ns == stamp  # reused, not rewritten
    # the token column need not be the first one (GermEval style: index, token, tag)
    write(tmp_path / "g" / "train.txt", "1\tde:Köln\tB-LOC\n2\tde:liegt\tO\n")
    corpus = load_corpus({"type": "column", "data_folder": str(tmp_path / "g"), "strip_prefix": "de:",
                          "column_format": {0: "index", 1: "text", 2: "ner"}, "sample_missing_splits": False})
    assert [t.text for t in corpus.train[0]] == ["Köln", "liegt"]
    assert corpus.train[0].get_spans("ner")[0].text == "Köln"


@needs_shared("ner/wikiann/en")
def test_wikiann_prefix_from_shared_data():
    corpus = load_corpus({"type": "column", "data_folder": str(SHARED / "ner" / "wikiann" / "en"),
                          "column_format": NER, "train_file": "test.txt", "strip_prefix": "en:",
                          "sample_missing_splits": False, "sample_train": 200})
    tokens = [t.text for s in sentences(corpus.train) for t in s]
    assert len(corpus.train) == 200 and not any(t.startswith("en:") for t in tokens)
    bundled = sentences(column(WIKIANN).test)
    assert [s.to_tokenized_string() for s in sentences(corpus.train)[:100]] == \
        [s.to_tokenized_string() for s in bundled]  # the bundled slice is the first 100 test sentences


def test_sampling_is_first_k_and_seeded(tmp_path):
    full = column(WIKIANN)
    small = column(WIKIANN, sample_train=25, sample_dev=5, sample_test=0)
    assert (len(small.train), len(small.dev), small.test) == (25, 5, None)
    assert [s.to_tokenized_string() for s in sentences(small.train)] == \
        [s.to_tokenized_string() for s in sentences(full.train)[:25]]
    only_train = {"train_file": "train.txt", "dev_file": None, "test_file": None, "autofind_splits": False}
    a, b = column(WIKIANN, **only_train), column(WIKIANN, **only_train)
    c = column(WIKIANN, seed=7, **only_train)
    assert (len(a.train), len(a.dev), len(a.test)) == (324, 36, 40)
    assert [s.to_tokenized_string() for s in sentences(a.dev)] == [s.to_tokenized_string() for s in sentences(b.dev)]
    assert [s.to_tokenized_string() for s in sentences(a.dev)] != [s.to_tokenized_string() for s in sentences(c.dev)]
    with pytest.raises(ConfigError, match="no sentences"):
        column(WIKIANN, sample_train=0, sample_dev=0, sample_test=0)


def test_text_corpora(tmp_path):
    plain = write(tmp_path / "raw.txt", "The cat sat .\n\n  Anna   lives in Bonn \n-DOCSTART-\n# a comment\n")
    corpus = load_corpus({"type": "text", "train_file": str(plain), "comment_symbol": "#"})
    assert [s.to_tokenized_string() for s in sentences(corpus.train)] == ["The cat sat .", "Anna lives in Bonn"]
    assert corpus.dev is None and corpus.test is None
    assert not corpus.train[0][0].labels
    prefixed = write(tmp_path / "raw2.txt", "en:Anna en:lives\n")
    corpus = load_corpus({"type": "text", "train_file": str(prefixed), "strip_prefix": "en:"})
    assert corpus.train[0].to_tokenized_string() == "Anna lives"
    # labels of a column file dropped; files relative to data_folder
    corpus = load_corpus({"type": "text", "format": "column", "data_folder": str(WIKIANN),
                          "train_file": "train.txt", "dev_file": "dev.txt", "sample_train": 50})
    assert (len(corpus.train), len(corpus.dev)) == (50, 100)
    assert corpus.train[0].to_tokenized_string().startswith("R.H. Saunders")
    assert not corpus.train[0].get_labels("ner") and not corpus.train[0].get_spans("ner")
    from skd_flair.models import is_unlabelled

    assert all(is_unlabelled(s) for s in corpus.train) and all(is_unlabelled(s) for s in corpus.dev)
    rest = load_corpus({"type": "text", "format": "column", "data_folder": str(WIKIANN), "train_file": "train.txt",
                        "skip_train": 50})
    assert len(rest.train) == 350 and rest.train[0].to_tokenized_string() != corpus.train[0].to_tokenized_string()
    labelled = load_corpus({"type": "column", "data_folder": str(WIKIANN), "column_format": {0: "text", 1: "ner"},
                            "sample_train": 50})
    assert {s.to_tokenized_string() for s in labelled.train}.isdisjoint(s.to_tokenized_string() for s in rest.train)
    with pytest.raises(ConfigError, match="format must be"):
        load_corpus({"type": "text", "train_file": str(plain), "format": "conll"})
    with pytest.raises(ConfigError, match="at least one of"):
        load_corpus({"type": "text"})
    with pytest.raises(ConfigError, match="holds no sentences"):
        load_corpus({"type": "text", "train_file": str(write(tmp_path / "empty.txt", "\n\n"))})


def test_concat_corpus(tmp_path):
    from torch.utils.data import ConcatDataset

    first = {"type": "column", "data_folder": str(WIKIANN), "column_format": NER, "sample_train": 30,
             "sample_dev": 10, "sample_test": 5}
    only_train = {"type": "text", "format": "column", "data_folder": str(WIKIANN), "train_file": "train.txt",
                  "skip_train": 100, "sample_train": 20}  # no dev, no test: those splits are skipped
    third = {**first, "sample_train": 7, "sample_dev": 3, "sample_test": 0}  # test dropped: skipped as well
    corpus = load_corpus({"type": "concat", "corpora": [first, only_train, third]})
    assert isinstance(corpus.train, ConcatDataset)
    assert (len(corpus.train), len(corpus.dev), len(corpus.test)) == (30 + 20 + 7, 10 + 3, 5)
    parts = [load_corpus(spec) for spec in (first, only_train, third)]
    expected = [s.to_tokenized_string() for part in parts for s in sentences(part.train)]
    assert [s.to_tokenized_string() for s in sentences(corpus.train)] == expected  # members in the order given
    assert [s.to_tokenized_string() for s in sentences(corpus.dev)] == \
        [s.to_tokenized_string() for part in (parts[0], parts[2]) for s in sentences(part.dev)]
    assert corpus.train[0].get_spans("ner") or any(s.get_spans("ner") for s in sentences(corpus.train)[:30])
    from skd_flair.models import is_unlabelled

    assert [is_unlabelled(s) for s in sentences(corpus.train)] == [False] * 30 + [True] * 20 + [False] * 7
    assert set(corpus.make_label_dictionary("ner", add_unk=False).get_items()) == {"PER", "LOC", "ORG"}
    # the common keys apply to the concatenation; a nested error names the member
    small = load_corpus({"type": "concat", "corpora": [first, third], "sample_train": 32, "sample_test": 0})
    assert (len(small.train), len(small.dev), small.test) == (32, 13, None)
    with pytest.raises(ConfigError, match=r"corpora\[1\].*nothere"):
        load_corpus({"type": "concat", "corpora": [first, {**first, "data_folder": str(tmp_path / "nothere")}]})
    for bad in ([], first, "column", [1]):
        with pytest.raises(ConfigError, match="corpora"):
            load_corpus({"type": "concat", "corpora": bad})


def test_flair_dataset_by_class_name(tmp_path, monkeypatch):
    corpus = load_corpus({"type": "flair", "dataset": "ColumnCorpus", "sample_train": 5,
                          "kwargs": {"data_folder": str(WIKIANN), "column_format": NER}})
    assert len(corpus.train) == 5 and len(corpus.test) == 100
    with pytest.raises(ConfigError, match="'CONLL_2003' is not a corpus class"):
        load_corpus({"type": "flair", "dataset": "CONLL_2003"})
    with pytest.raises(ConfigError, match="unknown key.*base_pth"):
        load_corpus({"type": "flair", "dataset": "UD_ENGLISH", "kwargs": {"base_pth": "x"}})

    class OFFLINE_SET(Corpus):
        def __init__(self, base_path=None):
            raise OSError("Connection refused")

    monkeypatch.setattr(flair.datasets, "OFFLINE_SET", OFFLINE_SET, raising=False)
    with pytest.raises(ConfigError, match="OFFLINE_SET failed.*Connection refused"):
        load_corpus({"type": "flair", "dataset": "OFFLINE_SET"})


def test_bundled_files_are_small():
    for folder in (WIKIANN, UD_SLICE):
        for path in folder.iterdir():
            assert path.stat().st_size < 600_000, path
    assert not list(RESOURCES.rglob("*conll03*")) and not list(RESOURCES.rglob("*conll02*"))
    assert os.path.exists(REPO / "experiments" / "data" / "make_wikiann_slice.py")
    assert os.path.exists(REPO / "experiments" / "data" / "make_ud_slice.py")


def test_raw_text_tokenised_from_directories_and_globs(tmp_path):
    folder = tmp_path / "news"
    write(folder / "b.txt", "Mr. Smith's U.S. trip, at last.\n \t \n\ufeff\n")
    write(folder / "a.txt", "\ufeffFirst line here.\n\n")
    (folder / ".hidden").write_text("never read\n", encoding="utf-8")
    write(tmp_path / "other.md", "not text of this corpus\n")
    texts = lambda corpus: [s.to_tokenized_string() for s in sentences(corpus.train)]  # noqa: E731
    whole = load_corpus({"type": "text", "train_file": str(folder), "tokenize": True})
    # sorted files, blank and BOM-only lines skipped (never a sentence, never a shift), Flair's tokenizer
    assert texts(whole) == ["First line here .", "Mr. Smith 's U.S. trip , at last ."]
    globbed = load_corpus({"type": "text", "data_folder": str(tmp_path), "train_file": "news/*.txt"})
    assert texts(globbed) == ["First line here.", "Mr. Smith's U.S. trip, at last."]
    with pytest.raises(ConfigError, match="matches no file"):
        load_corpus({"type": "text", "train_file": str(tmp_path / "*.csv")})
    with pytest.raises(ConfigError, match="tokenize applies to format: plain"):
        load_corpus({"type": "text", "format": "column", "train_file": str(folder / "a.txt"), "tokenize": True})


def test_raw_text_that_is_not_utf8_names_its_file_and_line(tmp_path):
    bad = tmp_path / "latin.txt"
    bad.write_bytes("fine line\nK\u00f6ln is fine\n".encode("utf-8") + "M\u00fcnchen\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin\.txt line 3 is not valid utf-8 text"):
        load_corpus({"type": "text", "train_file": str(bad)})
    assert sentences(load_corpus({"type": "text", "train_file": str(bad), "encoding": "latin-1"}).train)[2][0].text \
        == "M\u00fcnchen"
