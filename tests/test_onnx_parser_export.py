"""skd-flair export --format onnx for parsing students: the runner (no torch, no flair) parses as the model does."""
import contextlib
import functools
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

from skd_flair.cli import main
from skd_flair.models.dependency_tagger import DependencyTagger, make_tag_dictionary
from skd_flair.models.factorised_parser import FactorisedDependencyTagger
from tests.parsing import randomize, small_corpus
from tests.test_fast_parser import _embeddings

try:
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import onnxscript  # noqa: F401
except ImportError as error:  # the [export] extra is optional
    pytest.skip(f"the [export] extra (onnx, onnxscript, onnxruntime) is not installed: {error}",
                allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
RUN = ("import json, sys\n"
       "from skd_flair.onnx_runner import load\n"
       "texts = json.loads(sys.stdin.read())\n"
       "parser = load(sys.argv[1])\n"
       "results = [parser.predict(texts, batch_size=b) for b in (4, 1)]\n"
       "assert 'torch' not in sys.modules and 'flair' not in sys.modules, 'the runner stays light'\n"
       "print(json.dumps(results))\n")


def _export(model, tmp_path, *extra):
    model.eval().save(tmp_path / "parser.pt")
    out = tmp_path / "export"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["export", str(tmp_path / "parser.pt"), str(out), "--format", "onnx", *extra]) == 0
    return out, json.loads(stdout.getvalue())


@pytest.mark.parametrize("cls, repair", [(FactorisedDependencyTagger, "mst"), (DependencyTagger, "eisner"),
                                         (functools.partial(FactorisedDependencyTagger, head_relations=True), "mst"),
                                         (functools.partial(FactorisedDependencyTagger, head_relations=True,
                                                            head_offsets=True), "eisner")],
                         ids=["factorised-mst", "tags-eisner", "head_aware-mst", "head_offsets-eisner"])
def test_exported_parser_parses_like_the_model_without_torch(cls, repair, tmp_path):
    corpus = small_corpus(n_train=30, n_dev=2, n_test=12)
    torch.manual_seed(0)
    model = randomize(cls(_embeddings(corpus, tmp_path), make_tag_dictionary(corpus), hidden_size=8, repair=repair),
                      seed=1, scale=1.5)
    out, summary = _export(model, tmp_path)
    assert summary["format"] == "onnx" and json.loads((out / "tagger.json").read_text())["parser"]["repair"] == repair
    texts = [[t.text for t in s] for s in list(corpus.test) + list(corpus.train)[:10]] + [["unseen", "Words", "x"], []]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-c", RUN, str(out)], input=json.dumps(texts), capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    sentences = [Sentence(list(t)) for t in texts]
    model.predict(sentences, mini_batch_size=4)
    for results in json.loads(run.stdout):
        for sentence, result in zip(sentences, results):
            assert result["heads"] == [t.head_id for t in sentence]
            assert result["relations"] == [t.get_label("dependency").value for t in sentence]
            assert np.allclose(result["scores"], [t.get_label("dependency").score for t in sentence], atol=1e-5)
    assert len({t.get_label("dependency").value for s in sentences for t in s}) > 2


def test_int8_parser_export_and_command_line(tmp_path):
    corpus = small_corpus(n_train=30, n_dev=2, n_test=4)
    torch.manual_seed(0)
    model = randomize(FactorisedDependencyTagger(_embeddings(corpus, tmp_path), make_tag_dictionary(corpus),
                                                 hidden_size=8), seed=1, scale=1.5)
    out, summary = _export(model, tmp_path, "--quantize", "int8")
    assert summary["quantize"] == "int8" and summary["int8_tag_agreement"] > 0.5
    assert "DynamicQuantizeLSTM" in {node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "skd_flair.onnx_runner", str(out)], input="The cat sat\n\nx\n",
                         capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [line["tokens"] for line in lines] == [["The", "cat", "sat"], [], ["x"]]
    assert [line["heads"].count(0) for line in lines] == [1, 0, 1]  # one root per tree
    assert all(len(line["relations"]) == len(line["tokens"]) for line in lines)
    run = subprocess.run([sys.executable, "-m", "skd_flair.onnx_runner", str(out), "--conllu"],
                         input="The cat sat\n\nx\n", capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    blocks = [b.split("\n") for b in run.stdout.strip("\n").split("\n\n")]
    assert [[row.split("\t")[1] for row in b] for b in blocks] == [["The", "cat", "sat"], ["x"]]
    assert all(len(row.split("\t")) == 10 for b in blocks for row in b)  # the ten CoNLL-U columns
    assert [[int(row.split("\t")[6]) for row in b] for b in blocks] == [lines[0]["heads"], lines[2]["heads"]]
    assert [[row.split("\t")[7] for row in b] for b in blocks] == [lines[0]["relations"], lines[2]["relations"]]


def test_parser_with_a_heuristic_repair_is_refused_in_one_line(tmp_path, capsys):
    corpus = small_corpus(n_train=8, n_dev=2, n_test=2)
    model = DependencyTagger(_embeddings(corpus, tmp_path), make_tag_dictionary(corpus), hidden_size=4, repair="top3")
    model.save(tmp_path / "parser.pt")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "parser.pt"), str(tmp_path / "o"), "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("skd-flair: error: export: ONNX export: a parser is exported with its tree decoder"), err
