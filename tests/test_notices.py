"""Notices a new user needs: BIO tags learnt as BIOES, repeated sentences merged by the annotation, and tag lists
without a CRF's internal <START>/<STOP> states."""
import logging

import pytest

from skd_flair.models import DistillableTagger
from skd_flair.training.annotate import annotate
from skd_flair.training.corpora import load_corpus
from tests import toy
from tests.toy import write_column


@pytest.fixture
def flair_records():
    """Flair's logger does not propagate to the root logger that caplog watches: collect its records here."""
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep(level=logging.INFO)
    logger = logging.getLogger("flair")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _bioes_lines(sentences):
    lines = []
    for s in sentences:
        tags = ["O"] * len(s)
        for span in s.get_spans("ner"):
            idx = [t.idx - 1 for t in span]
            if len(idx) == 1:
                tags[idx[0]] = "S-" + span.tag
            else:
                tags[idx[0]], tags[idx[-1]] = "B-" + span.tag, "E-" + span.tag
        lines += [f"{t.text} {tag}" for t, tag in zip(s, tags)] + [""]
    return "\n".join(lines) + "\n"


def test_bio_columns_are_announced_as_learnt_in_bioes(tmp_path, caplog):
    bio, bioes = tmp_path / "bio", tmp_path / "bioes"
    bio.mkdir(), bioes.mkdir()
    write_column(bio / "train.txt", toy.sentences(20, 0))
    (bioes / "train.txt").write_text(_bioes_lines(toy.sentences(20, 0)))
    with caplog.at_level(logging.INFO, logger="skd_flair"):
        load_corpus({"type": "column", "data_folder": str(bio), "column_format": {0: "text", 1: "ner"}})
    notices = [r.getMessage() for r in caplog.records if "BIO tags" in r.getMessage()]
    assert len(notices) == 1 and "'ner' column holds BIO tags" in notices[0] and "BIOES" in notices[0]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="skd_flair"):
        load_corpus({"type": "column", "data_folder": str(bioes), "column_format": {0: "text", 1: "ner"}})
    assert not [r for r in caplog.records if "BIO tags" in r.getMessage()]


def test_repeated_sentences_are_counted_on_every_annotation(tmp_path, caplog):
    corpus = toy.corpus(n_train=12)
    sentences = list(corpus.train) + list(corpus.train)[:3]  # three sentences twice
    teacher, student = toy.tagger(corpus, seed=1), toy.tagger(corpus, seed=2)
    for _ in range(2):  # a cache miss, then a hit
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="skd_flair"):
            annotate(teacher, sentences, student, "structural", cache_dir=tmp_path, progress=False)
        merged = [r.getMessage() for r in caplog.records if "repeat an earlier one" in r.getMessage()]
        distinct = len({tuple(t.text for t in s) for s in sentences})
        assert len(merged) == 1 and f"{len(sentences) - distinct} of {len(sentences)} sentences" in merged[0]
        assert f"each of the {distinct} distinct sentences" in merged[0]


def test_tag_lists_leave_out_the_crf_start_and_stop_states(tmp_path, flair_records):
    tagger = toy.tagger(toy.corpus(), use_crf=True)
    assert "<START>" in tagger.label_dictionary.get_items()  # Flair's CRF still has its states inside
    lines = [m for m in flair_records if "predicts:" in m]
    assert len(lines) == 1 and lines[0].startswith("DistillableTagger predicts: ")
    assert "<START>" not in lines[0] and "<STOP>" not in lines[0] and "S-PER" in lines[0]
    tagger.save(tmp_path / "m.pt")
    flair_records.clear()
    DistillableTagger.load(tmp_path / "m.pt")  # what evaluate, predict and speed print when they load a model
    lines = [m for m in flair_records if "predicts:" in m]
    assert lines and all("<START>" not in m and "<STOP>" not in m for m in lines)
    assert not any(m.startswith("SequenceTagger predicts") for m in flair_records)
