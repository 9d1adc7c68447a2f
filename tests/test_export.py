"""skd-flair export: vocabulary trimming, int8 and fp16 files that load back and predict, and the one-line CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from flair.data import Sentence
from flair.embeddings import CharacterEmbeddings, StackedEmbeddings, WordEmbeddings

from skd_flair.cli import main
from skd_flair.models import BiaffineSpanTagger, DistillableTagger, FastTextSubwordEmbeddings
from skd_flair.registry import ConfigError
from skd_flair.training.embeddings import char_dictionary
from skd_flair.training.export import export_model, lookup_forms, static_tables
from skd_flair.training.models import load_model
from tests import toy
from tests.toy import write_column

REPO = Path(__file__).resolve().parents[1]
IN_VOCAB = [["Anna", "went", "to", "Berlin"], ["the", "Acme", "Inc", "saw", "Bob", "in", "Paris"],
            ["Carla", "visited", "Rome", "2024", "with", "Globex"]]
VOCAB = sorted({w for s in IN_VOCAB for w in s})
# words the GloVe-like table has but the vocabulary does not reach: the trimmed model must give them <unk>
OUTSIDE = ["Zurich", "Lisbon", "zurich"]


def table_words(corpus):
    words = {t.text for s in corpus.train for t in s} | set(OUTSIDE)
    words -= {"Paris", "2024"}  # only reachable through Flair's fallbacks: "paris" and "####"
    return sorted(words | {"paris", "####", "0000"} | {f"filler{i}" for i in range(3000)})


@pytest.fixture(scope="module")
def corpus():
    return toy.corpus()


@pytest.fixture(scope="module")
def kv_path(tmp_path_factory, corpus):
    from gensim.models import KeyedVectors

    words = table_words(corpus)
    kv = KeyedVectors(vector_size=16)
    kv.add_vectors(words, np.random.default_rng(0).normal(size=(len(words), 16)).astype(np.float32))
    path = tmp_path_factory.mktemp("vectors") / "tiny.kv"
    kv.save(str(path))
    return path


def make_tagger(corpus, word_embeddings, seed=0):
    torch.manual_seed(seed)
    chars = CharacterEmbeddings(path_to_char_dict=char_dictionary(corpus), char_embedding_dim=4, hidden_size_char=4)
    model = DistillableTagger(StackedEmbeddings([word_embeddings, chars]),
                              corpus.make_label_dictionary("ner", add_unk=False), "ner", hidden_size=8)
    with torch.no_grad():  # a random model predicts O everywhere; sharpen its emissions so spans appear
        model.linear.weight.mul_(20)
    return model.eval()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, corpus, kv_path):
    path = tmp_path_factory.mktemp("model") / "student.pt"
    make_tagger(corpus, WordEmbeddings(str(kv_path), name="tiny")).save(path)
    return path


@pytest.fixture
def vocab_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\ufeff" + "\n".join(VOCAB) + "\n\n", encoding="utf-8")
    return path


def emissions(model, words):
    with torch.no_grad():
        features, _ = model._features([Sentence(list(words))])
    return features


def spans(model, sentences):
    out = []
    for words in sentences:
        sentence = Sentence(list(words))
        model.predict(sentence)
        out.append([(s.text, s.tag) for s in sentence.get_spans("ner")])
    return out


def word_table(model):
    return static_tables(model.embeddings)[0][2]


def test_trimmed_file_is_smaller_and_predicts_identically(model_path, vocab_file, tmp_path):
    out = tmp_path / "small.pt"
    summary = export_model(model_path, out, vocab=vocab_file)
    original, trimmed = DistillableTagger.load(model_path), load_model(out)
    assert type(trimmed) is DistillableTagger and DistillableTagger.load(out) is not None
    assert os.path.getsize(out) < os.path.getsize(model_path) / 2
    assert summary["size_mb_after"] < summary["size_mb_before"] and summary["words_kept"] == len(word_table(trimmed).vocab)
    for words in IN_VOCAB:
        assert torch.equal(emissions(original, words), emissions(trimmed, words))
    assert spans(original, IN_VOCAB) == spans(trimmed, IN_VOCAB) and any(spans(original, IN_VOCAB))
    assert not list(tmp_path.glob(".*.part"))  # the temporary file was renamed away


def test_lookup_fallbacks_are_kept_and_other_words_get_the_unknown_vector(model_path, vocab_file, tmp_path):
    out = tmp_path / "small.pt"
    export_model(model_path, out, vocab=vocab_file)
    old, new = word_table(DistillableTagger.load(model_path)), word_table(DistillableTagger.load(out))
    expected = {form for word in VOCAB for form in lookup_forms(word) if form in old.vocab}
    assert set(new.vocab) == expected and {"paris", "####", "0000"} <= expected  # Paris -> paris, 2024 -> ####, 0000
    assert "Zurich" not in new.vocab and "filler1" not in new.vocab
    for word in VOCAB:  # a vocabulary word keeps its vector, whichever form Flair's lookup reaches
        assert torch.equal(new.embedding.weight[new.get_cached_token_index(word)],
                           old.embedding.weight[old.get_cached_token_index(word)])
    unknown = new.embedding.weight[len(new.vocab)]
    assert torch.equal(unknown, old.embedding.weight[len(old.vocab)])
    for word in OUTSIDE:  # had a real vector in the original; now the unknown one
        assert old.get_cached_token_index(word) != len(old.vocab)
        assert new.get_cached_token_index(word) == len(new.vocab)
        sentence = Sentence([word])
        new.embed(sentence)
        assert torch.equal(sentence[0].get_embedding(), unknown)


def test_corpus_config_vocabulary_includes_every_split_and_unlabelled_text(model_path, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split, n, seed in (("train", 5, 0), ("dev", 5, 1), ("test", 5, 2)):
        write_column(data / f"{split}.txt", toy.sentences(n, seed))
    (data / "raw.txt").write_text("Zurich saw Anna\n")
    config = {"corpus": {"type": "column", "data_folder": str(data), "column_format": {0: "text", 1: "ner"}},
              "unlabelled": {"type": "text", "train_file": str(data / "raw.txt")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    export_model(model_path, tmp_path / "small.pt", corpus=tmp_path / "c.yaml")
    kept = set(word_table(DistillableTagger.load(tmp_path / "small.pt")).vocab)
    tokens = {t.text for split, n, seed in ((0, 5, 0), (1, 5, 1), (2, 5, 2)) for s in toy.sentences(n, seed)
              for t in s}
    assert kept == {f for w in tokens | {"Zurich", "saw", "Anna"} for f in lookup_forms(w)} & set(table_words(toy.corpus()))
    assert "Zurich" in kept and "Lisbon" not in kept


def test_int8_file_loads_again_and_predicts_near_identically(model_path, vocab_file, tmp_path):
    import flair.nn
    from torch.ao.nn.quantized.dynamic import LSTM as QLSTM, Linear as QLinear

    out = tmp_path / "int8.pt"
    summary = export_model(model_path, out, vocab=vocab_file, quantize="int8")
    assert summary["quantize"] == "int8" and "rnn" in summary["quantized_layers"]
    original = DistillableTagger.load(model_path)
    for loaded in (load_model(out), DistillableTagger.load(out), flair.nn.Model.load(out)):
        assert isinstance(loaded.rnn, QLSTM) and isinstance(loaded.linear, QLinear)
        assert isinstance(loaded.embedding2nn, QLinear)
        assert isinstance(loaded.embeddings.list_embedding_1.char_rnn, QLSTM)
        for words in IN_VOCAB:  # emissions reach about 6 here
            assert torch.allclose(emissions(loaded, words), emissions(original, words), atol=0.25)
        same = [a == b for a, b in zip(spans(loaded, IN_VOCAB), spans(original, IN_VOCAB))]
        assert sum(same) >= 2  # near-identical: int8 weights move one borderline span of this random model
    again = tmp_path / "again.pt"  # a loaded int8 model saves and loads like any other
    loaded.save(again)
    assert isinstance(DistillableTagger.load(again).rnn, QLSTM)


def test_int8_stores_word_tables_as_int8_rows_within_half_a_step(model_path, vocab_file, tmp_path):
    export_model(model_path, tmp_path / "f32.pt", vocab=vocab_file)
    summary = export_model(model_path, tmp_path / "int8.pt", vocab=vocab_file, quantize="int8")
    key = "embeddings.list_embedding_0.embedding.weight"
    assert summary["int8_tables"] == [key]
    stored = torch.load(tmp_path / "int8.pt", map_location="cpu", weights_only=False)["state_dict"]
    assert key not in stored and stored[key + "_int8"].dtype == torch.int8
    scale = stored[key + "_row_scale"]
    full = word_table(load_model(tmp_path / "f32.pt")).embedding.weight
    loaded = load_model(tmp_path / "int8.pt")
    table = word_table(loaded).embedding.weight
    assert table.dtype == torch.float32 and table.shape == full.shape
    error = (table - full).abs()
    assert bool((error <= scale[:, None] / 2 + 1e-7).all()) and float(error.max()) > 0
    # every row's largest entry is exact up to float rounding: the scale is max|row| / 127
    assert torch.allclose(table.abs().amax(1), full.abs().amax(1), rtol=1e-6)
    for words in IN_VOCAB:
        assert torch.allclose(emissions(loaded, words), emissions(load_model(tmp_path / "f32.pt"), words), atol=0.3)


def test_half_stores_fp16_and_loads_float32(model_path, vocab_file, tmp_path):
    export_model(model_path, tmp_path / "f32.pt", vocab=vocab_file)
    export_model(model_path, tmp_path / "f16.pt", vocab=vocab_file, half=True)
    stored = torch.load(tmp_path / "f16.pt", map_location="cpu", weights_only=False)["state_dict"]
    assert stored["embeddings.list_embedding_0.embedding.weight"].dtype == torch.float16
    assert os.path.getsize(tmp_path / "f16.pt") < os.path.getsize(tmp_path / "f32.pt")
    full, half = load_model(tmp_path / "f32.pt"), load_model(tmp_path / "f16.pt")
    assert {t.dtype for t in [*half.parameters(), *half.buffers()] if t.is_floating_point()} == {torch.float32}
    for words in IN_VOCAB:
        assert torch.allclose(emissions(half, words), emissions(full, words), atol=0.01)
    assert spans(half, IN_VOCAB) == spans(full, IN_VOCAB)


def test_fasttext_table_is_trimmed_to_exact_keys(corpus, tmp_path):
    from gensim.models import FastText

    texts = [[t.text for t in s] for s in corpus.train] + [["Zurich", "Lisbon"]] * 3
    ft = FastText(texts, vector_size=8, min_count=1, epochs=1, min_n=2, max_n=3, bucket=500, workers=1, seed=1)
    model = make_tagger(corpus, FastTextSubwordEmbeddings.from_gensim(ft.wv, name="ft"))
    model.save(tmp_path / "ft.pt")
    (tmp_path / "v.txt").write_text("\n".join(VOCAB))
    export_model(tmp_path / "ft.pt", tmp_path / "small.pt", vocab=tmp_path / "v.txt")
    trimmed = DistillableTagger.load(tmp_path / "small.pt")
    assert set(word_table(trimmed).vocab) == set(VOCAB) & set(ft.wv.key_to_index)
    assert "Zurich" not in word_table(trimmed).vocab
    for words in IN_VOCAB:
        if set(words) <= set(ft.wv.key_to_index):
            assert torch.equal(emissions(trimmed, words), emissions(model, words))


def test_command_line_prints_one_json_line(model_path, vocab_file, tmp_path, capsys):
    out = tmp_path / "cli.pt"
    assert main(["export", str(model_path), str(out), "--vocab", str(vocab_file), "--half"]) == 0
    stdout = capsys.readouterr().out
    assert stdout.count("\n") == 1
    summary = json.loads(stdout)
    assert summary["half"] is True and summary["size_mb_after"] < summary["size_mb_before"] and out.exists()


def one_line_error(capsys, argv):
    capsys.readouterr()  # drop what building the test's models printed
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("skd-flair: error: export:") and "\n" not in err, err  # no log lines, no traceback
    return err


def test_errors_are_one_line(model_path, corpus, tmp_path, capsys):
    assert "does not exist" in one_line_error(capsys, ["export", str(tmp_path / "none.pt"), str(tmp_path / "o.pt")])
    (tmp_path / "empty.txt").write_text("\n  \n")
    err = one_line_error(capsys, ["export", str(model_path), str(tmp_path / "o.pt"), "--vocab",
                                  str(tmp_path / "empty.txt")])
    assert "vocabulary is empty" in err
    span = BiaffineSpanTagger(toy.tagger(corpus).embeddings, corpus.make_label_dictionary("ner", add_unk=False),
                              "ner", hidden_size=4, mlp_size=4)
    span.save(tmp_path / "span.pt")
    assert "not a sequence tagger" in one_line_error(capsys, ["export", str(tmp_path / "span.pt"),
                                                              str(tmp_path / "o.pt")])
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    assert "not a Flair model file" in one_line_error(capsys, ["export", str(tmp_path / "junk.pt"),
                                                               str(tmp_path / "o.pt")])
    assert not (tmp_path / "o.pt").exists()
    with pytest.raises(ConfigError, match="folder"):
        export_model(model_path, tmp_path)


def test_import_skd_flair_registers_models_with_flair(model_path):
    code = ("import sys, skd_flair\n"
            "assert 'flair' not in sys.modules and 'torch' not in sys.modules, 'import skd_flair stays light'\n"
            "import flair.nn\n"
            f"model = flair.nn.Model.load({str(model_path)!r})\n"
            "print(type(model).__module__, type(model).__name__)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["skd_flair.models.tagger", "DistillableTagger"]


_SKD_MODEL_CLASSES = """
def skd_classes(root):
    seen, todo = set(), [root]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("skd_flair.") and not cls.__name__.startswith("_"):
            seen.add(cls.__module__ + "." + cls.__name__)
    return sorted(seen)
"""


def test_import_skd_flair_lets_flair_find_every_model_class():
    """Flair's loaders find a model class among the subclasses defined so far: `import skd_flair` must define
    every one of ours (a factorised parsing student or a span-CRF student was not, and Model.load failed)."""
    import importlib
    import pkgutil

    import flair.nn

    import skd_flair.models as models

    for module in pkgutil.iter_modules(models.__path__):
        importlib.import_module(f"skd_flair.models.{module.name}")
    scope = {}
    exec(_SKD_MODEL_CLASSES, scope)
    every = scope["skd_classes"](flair.nn.Model)
    assert "skd_flair.models.factorised_parser.FactorisedDependencyTagger" in every
    code = "import skd_flair, flair.nn\n" + _SKD_MODEL_CLASSES + "print(skd_classes(flair.nn.Model))\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str(every)


def test_frequent_words_follow_the_tables_row_order(model_path, kv_path):
    from gensim.models import KeyedVectors

    from skd_flair.training.export import frequent_words, load_tagger

    rows = KeyedVectors.load(str(kv_path)).index_to_key
    model = load_tagger(model_path)
    assert frequent_words(model, 3) == rows[:3] and frequent_words(model, 10 ** 6) == rows
