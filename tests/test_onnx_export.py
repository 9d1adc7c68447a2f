"""skd-flair export --format onnx: model.onnx + tagger.json, and a runner without torch or flair that tags like
the model."""
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from flair.data import Sentence
from flair.embeddings import CharacterEmbeddings, StackedEmbeddings, WordEmbeddings

from skd_flair.cli import main
from skd_flair.models import DistillableTagger
from skd_flair.models.char_embeddings import BatchedCharacterEmbeddings
from skd_flair.training.embeddings import char_dictionary
from tests import toy

try:
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import onnxscript  # noqa: F401
except ImportError as error:  # the [export] extra is optional
    pytest.skip(f"the [export] extra (onnx, onnxscript, onnxruntime) is not installed: {error}",
                allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["Anna went to Berlin", "ANNA went TO berlin", "anna saw bob in paris", "Paris", "Zürich 2024",
         "in Berlin in Paris in", "a the a", "Acme Inc saw Acme Inc and the a", "12 3.5 1999 x7 Q4-2021", "",
         "Xyzzy Plugh went to Frobozz", "with with with Bob",
         "from Rome to Paris and from Paris to Rome with Anna and Bob and Carla in 2020"]


@pytest.fixture(scope="module", params=[CharacterEmbeddings, BatchedCharacterEmbeddings], ids=["flair", "batched"])
def exported(tmp_path_factory, request):
    """A CRF student (GloVe-like table + chars, Flair's class or the batched one, which does not reorder repeated
    words) exported with a vocabulary, and the model itself."""
    from gensim.models import KeyedVectors

    corpus = toy.corpus()
    tmp = tmp_path_factory.mktemp("onnx")
    words = sorted({t.text for s in corpus.train for t in s} - {"Paris"} | {"paris", "####", "0000", "zurich"})
    kv = KeyedVectors(vector_size=6)
    kv.add_vectors(words, np.random.default_rng(0).normal(size=(len(words), 6)).astype(np.float32))
    kv.save(str(tmp / "tiny.kv"))
    torch.manual_seed(0)
    chars = request.param(path_to_char_dict=char_dictionary(corpus), char_embedding_dim=4, hidden_size_char=3)
    model = DistillableTagger(StackedEmbeddings([WordEmbeddings(str(tmp / "tiny.kv"), name="tiny"), chars]),
                              corpus.make_label_dictionary("ner", add_unk=False), "ner", hidden_size=5)
    with torch.no_grad():
        model.linear.weight.mul_(20)  # a random model predicts O everywhere; sharpen it so spans appear
    model.eval().save(tmp / "student.pt")
    # the words of TEXTS: each keeps its vector (Paris -> paris, 2024 -> ####); "zurich" and others are dropped
    (tmp / "vocab.txt").write_text("\n".join(sorted({w for text in TEXTS for w in text.split()})))
    out = tmp / "export"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["export", str(tmp / "student.pt"), str(out), "--format", "onnx", "--vocab",
                     str(tmp / "vocab.txt")]) == 0
    assert stdout.getvalue().count("\n") == 1, stdout.getvalue()  # one JSON line, for scripts
    summary = json.loads(stdout.getvalue())
    assert summary["format"] == "onnx" and summary["tables"][0]["words_after"] < len(words)
    return tmp, out, DistillableTagger.load(tmp / "student.pt")


def test_export_writes_graph_and_config(exported, capsys):
    _, out, model = exported
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "tagger.json"]
    config = json.loads((out / "tagger.json").read_text())
    assert config["labels"] == model.label_names and config["inputs"] == ["word_ids", "char_ids", "char_index",
                                                                          "lengths"]
    assert {"paris", "####"} <= set(config["word_tables"][0]) and "zurich" not in config["word_tables"][0]
    graph = onnx.load(str(out / "model.onnx"))
    assert [d.dim_param for d in graph.graph.output[0].type.tensor_type.shape.dim[:2]] == ["B", "N"]
    # every input dimension stays dynamic, also for the second export in this process (the fixture's second
    # parameter), where stale RNN dispatch caches once fixed N and C to the example's sizes
    inputs = {i.name: [d.dim_param for d in i.type.tensor_type.shape.dim] for i in graph.graph.input}
    assert inputs["char_ids"] == ["U", "C"] and inputs["char_index"] == ["B", "N"] and inputs["lengths"] == ["B"]
    assert inputs["word_ids"][:2] == ["B", "N"]


def test_runner_without_torch_or_flair_tags_like_the_model(exported):
    _, out, model = exported
    code = ("import json, sys\n"
            "from skd_flair.onnx_runner import OnnxTagger\n"
            "texts = json.loads(sys.stdin.read())\n"
            "tagger = OnnxTagger(sys.argv[1])\n"
            "results = [tagger.predict([t.split() for t in texts], batch_size=b) for b in (4, 1)]\n"
            "assert 'torch' not in sys.modules and 'flair' not in sys.modules, 'the runner stays light'\n"
            "print(json.dumps(results))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", code, str(out)], input=json.dumps(TEXTS), capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    sentences = [Sentence(text.split()) if text else Sentence("") for text in TEXTS]
    model.predict(sentences, mini_batch_size=4)
    found = 0
    for results in json.loads(run.stdout):
        for sentence, result in zip(sentences, results):
            expected = [(s.tokens[0].idx - 1, s.tokens[-1].idx, s.tag, s.score) for s in sentence.get_spans("ner")]
            got = [(s["start"], s["end"], s["type"], s["score"]) for s in result["spans"]]
            assert [e[:3] for e in expected] == [g[:3] for g in got], sentence.to_tokenized_string()
            assert np.allclose([e[3] for e in expected], [g[3] for g in got], atol=1e-5)
            found += len(got)
    assert found > 4


def test_runner_command_line(exported):
    _, out, _ = exported
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "skd_flair.onnx_runner", str(out)], input="Anna went to Berlin\n\nx\n",
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["tokens"] for line in lines] == [["Anna", "went", "to", "Berlin"], [], ["x"]]
    assert all(len(line["tags"]) == len(line["tokens"]) for line in lines)
    run = subprocess.run([sys.executable, "-m", "skd_flair.onnx_runner", str(out), "--conllu"], input="x\n",
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert run.returncode == 2 and "--conllu needs a parser" in run.stderr.strip().splitlines()[-1]


def test_unsupported_onnx_exports_fail_in_one_line(exported, tmp_path, capsys):
    tmp, _, _ = exported
    capsys.readouterr()
    assert main(["export", str(tmp / "student.pt"), str(tmp_path / "o"), "--format", "onnx", "--half"]) == 2
    assert "applies to --format flair" in capsys.readouterr().err
    model = toy.tagger(toy.corpus())
    model.save(tmp_path / "onehot.pt")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "onehot.pt"), str(tmp_path / "o"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the log lines of loading the model
    assert err.startswith("skd-flair: error: export: fast path: unsupported embedding OneHotEmbeddings"), err


def test_int8_onnx_export_stores_int8_weights_and_tags_like_the_float_graph(exported, tmp_path):
    tmp, out, _ = exported
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["export", str(tmp / "student.pt"), str(tmp_path / "i8"), "--format", "onnx", "--vocab",
                     str(tmp / "vocab.txt"), "--quantize", "int8"]) == 0
    summary = json.loads(stdout.getvalue())
    assert summary["quantize"] == "int8" and isinstance(summary["int8_tag_agreement"], float)
    graph = onnx.load(str(tmp_path / "i8" / "model.onnx"))
    ops = {node.op_type for node in graph.graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops  # both BiLSTMs (word and character) in int8
    one_byte = {init.name for init in graph.graph.initializer
                if init.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)}
    float_names = {init.name for init in graph.graph.initializer if init.data_type == onnx.TensorProto.FLOAT}
    # the word and character tables too: looked up in int8, each row dequantised after the lookup
    assert {"fast.word_weights.0_quantized", "fast.char_weight_quantized"} <= one_byte, sorted(one_byte)
    assert not float_names & {"fast.word_weights.0", "fast.char_weight"}
    from skd_flair.onnx_runner import OnnxTagger

    texts = [text.split() for text in TEXTS if text]
    floats, ints = OnnxTagger(out).emissions(texts), OnnxTagger(tmp_path / "i8").emissions(texts)
    assert floats.shape == ints.shape and not np.array_equal(floats, ints)  # really another graph
    # each weight within half an int8 step: the emissions stay within a few percent of their range
    assert np.abs(floats - ints).max() < 0.05 * np.abs(floats).max()


def test_int8_onnx_export_quantises_a_word_bilstm_above_the_exporters_folding_limit(tmp_path):
    """With 48 hidden units the recurrent weights (192 x 48 = 9,216) pass the exporter's 8,192-element constant
    folding limit: its gate reordering then stayed a run-time Slice/Concat, and the quantiser left that LSTM in
    float32 (as it did for every real student)."""
    from gensim.models import KeyedVectors

    from skd_flair.training.export import export_model

    corpus = toy.corpus()
    words = sorted({t.text for s in corpus.train for t in s})
    kv = KeyedVectors(vector_size=6)
    kv.add_vectors(words, np.random.default_rng(0).normal(size=(len(words), 6)).astype(np.float32))
    kv.save(str(tmp_path / "tiny.kv"))
    torch.manual_seed(0)
    chars = CharacterEmbeddings(path_to_char_dict=char_dictionary(corpus), char_embedding_dim=4, hidden_size_char=3)
    model = DistillableTagger(StackedEmbeddings([WordEmbeddings(str(tmp_path / "tiny.kv"), name="tiny"), chars]),
                              corpus.make_label_dictionary("ner", add_unk=False), "ner", hidden_size=48)
    model.eval().save(tmp_path / "wide.pt")
    summary = export_model(tmp_path / "wide.pt", tmp_path / "i8", format="onnx", quantize="int8")
    assert summary["int8_tag_agreement"] > 0.9
    graph = onnx.load(str(tmp_path / "i8" / "model.onnx")).graph
    initializers = {init.name for init in graph.initializer}
    lstms = [node for node in graph.node if "LSTM" in node.op_type]
    assert len(lstms) == 4 and {node.op_type for node in lstms} == {"DynamicQuantizeLSTM"}
    assert all(name in initializers for node in lstms for name in node.input[1:3])  # weights stored, not computed
