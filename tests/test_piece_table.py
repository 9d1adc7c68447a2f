"""A transformer's input piece table as static word vectors (embedding type 'pieces'), offline, on a tiny BERT."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from flair.data import Sentence  # noqa: E402

from tests.tiny_bert import save_tiny_bert  # noqa: E402
from skd_flair.models import DistillableTagger, PieceTableEmbeddings  # noqa: E402
from skd_flair.registry import ConfigError  # noqa: E402
from skd_flair.training.corpora import load_corpus  # noqa: E402
from skd_flair.training.embeddings import build_embeddings  # noqa: E402
from skd_flair.training.export import export_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WIKIANN = REPO / "resources" / "data" / "wikiann_en"
WORDS = ["the", "cat", "Berlin", "sat"]
TEXT = "the cat Katzenstadt sat in Berlin ."  # in-vocabulary words, a word of several pieces, punctuation


def tiny_bert(folder: Path, dtype=torch.float32) -> Path:
    return save_tiny_bert(folder, WORDS, more_chars=TEXT, hidden=8, layers=1, positions=32, dtype=dtype)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("pieces") / "tiny-bert")


def reference(folder: Path, word: str, pooling: str) -> torch.Tensor:
    """What the word's vector must be, from transformers' own tokenizer and embedding module."""
    from transformers import AutoModel, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(folder)(word, add_special_tokens=False)["input_ids"]
    table = AutoModel.from_pretrained(folder).get_input_embeddings().weight.detach()
    if not ids:
        return torch.zeros(table.shape[1])
    return table[ids].mean(0) if pooling == "mean" else table[ids[0]]


@pytest.mark.parametrize("pooling", ["mean", "first"])
def test_each_word_is_the_pooled_rows_of_its_pieces(bert, pooling):
    embeddings = build_embeddings({"type": "pieces", "model": str(bert), "pooling": pooling, "name": "p"})
    assert isinstance(embeddings, PieceTableEmbeddings) and embeddings.embedding_length == 8
    sentence = Sentence(TEXT)
    embeddings.embed(sentence)
    assert len(embeddings.pieces("Katzenstadt")) == (11 if pooling == "mean" else 1)
    for token in sentence:
        assert torch.allclose(token.get_embedding(["p"]), reference(bert, token.text, pooling), atol=1e-6), token.text
    cat, katzen = sentence[1].get_embedding(["p"]), sentence[2].get_embedding(["p"])
    assert not torch.allclose(cat, katzen)  # no accidental sharing of one row between words


def test_a_word_without_pieces_gets_zeros(bert):
    embeddings = build_embeddings({"type": "pieces", "model": str(bert), "name": "p"})
    sentence = Sentence(["cat", "\u200b"])  # a zero-width space: BERT's normaliser drops it, no piece is left
    embeddings.embed(sentence)
    assert embeddings.pieces("\u200b") == ()
    assert torch.count_nonzero(sentence[1].get_embedding(["p"])) == 0
    assert torch.count_nonzero(sentence[0].get_embedding(["p"])) > 0


def test_a_tagger_saves_and_loads_without_the_transformer_folder_in_its_stored_precision(tmp_path):
    source = tiny_bert(tmp_path / "fp16-bert", dtype=torch.float16)
    corpus = load_corpus({"type": "column", "data_folder": str(WIKIANN), "column_format": {0: "text", 1: "ner"},
                          "sample_train": 20, "sample_dev": 5, "sample_test": 5})
    embeddings = build_embeddings([{"type": "pieces", "model": str(source), "name": "p"}], corpus=corpus)
    table = embeddings.embeddings[0]
    assert table.vectors.dtype == torch.float16  # the checkpoint's precision, not transformers' float32 load
    tagger = DistillableTagger(hidden_size=8, embeddings=embeddings, tag_type="ner", use_crf=True,
                               tag_dictionary=corpus.make_label_dictionary("ner", add_unk=False))
    tagger.save(tmp_path / "tagger.pt")
    before = Sentence(TEXT)
    tagger.embeddings.embed(before)
    shutil.rmtree(source)
    loaded = DistillableTagger.load(tmp_path / "tagger.pt")
    after = Sentence(TEXT)
    loaded.embeddings.embed(after)
    member = loaded.embeddings.embeddings[0]
    assert isinstance(member, PieceTableEmbeddings) and member.vectors.dtype == torch.float16
    assert torch.equal(member.vectors, table.vectors)
    for b, a in zip(before, after):
        assert torch.equal(b.get_embedding(), a.get_embedding())
    one, two = Sentence(TEXT), Sentence(TEXT)
    tagger.predict(one, return_probabilities_for_all_classes=True)
    loaded.predict(two, return_probabilities_for_all_classes=True)
    assert [t.get_label("ner").score for t in one] == pytest.approx([t.get_label("ner").score for t in two])

    # skd-flair export passes the table through (it trims word tables only), in its precision with --half too
    (tmp_path / "vocab.txt").write_text("the\ncat\n", encoding="utf-8")
    export_model(tmp_path / "tagger.pt", tmp_path / "half.pt", vocab=tmp_path / "vocab.txt", half=True)
    exported = DistillableTagger.load(tmp_path / "half.pt")
    assert torch.equal(exported.embeddings.embeddings[0].vectors, table.vectors)
    three = Sentence(TEXT)
    exported.predict(three, return_probabilities_for_all_classes=True)
    assert [t.get_label("ner").score for t in three] == pytest.approx([t.get_label("ner").score for t in one],
                                                                       abs=0.01)


def test_the_table_stays_on_the_cpu_in_its_precision_when_the_model_moves(bert):
    table = PieceTableEmbeddings.from_pretrained(str(bert), name="p")
    table.to(torch.float64)
    assert table.vectors.dtype == torch.float32 and table.vectors.device.type == "cpu"


@pytest.mark.parametrize("spec, match", [
    ({"type": "pieces", "model": "/no/such/bert"}, "/no/such/bert"),
    ({"type": "pieces", "model": "x", "pooling": "max"}, "pooling must be one of mean, first"),
    ({"type": "pieces"}, "missing|model"),
])
def test_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_embeddings(spec)


def test_a_file_or_a_folder_without_a_model_is_a_config_error(bert, tmp_path):
    with pytest.raises(ConfigError, match="is a file"):
        build_embeddings({"type": "pieces", "model": str(bert / "config.json")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        build_embeddings({"type": "pieces", "model": str(tmp_path / "empty")})
