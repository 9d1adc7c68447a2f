"""The configuration-driven jobs and the skd-flair command line, on a tiny corpus written to disk."""
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from skd_flair.cli import main
from skd_flair.registry import ConfigError
from skd_flair.training.cache import sentence_key
from skd_flair.training.pipeline import check_config, distill, load_config, train_model
from tests import toy
from tests.toy import write_column

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for split, n, seed in (("train", 40, 0), ("dev", 10, 1), ("test", 10, 2)):
        write_column(root / f"{split}.txt", toy.sentences(n, seed))
    (root / "raw.txt").write_text("\n".join(" ".join(t.text for t in s) for s in toy.sentences(15, 9)) + "\n")
    return root


def config(data, out, **extra):
    base = {
        "seed": 1,
        "corpus": {"type": "column", "data_folder": str(data), "column_format": {0: "text", 1: "ner"}},
        "model": {"type": "tagger", "tag_type": "ner", "use_crf": True, "hidden_size": 8,
                  "embeddings": [{"type": "onehot", "embedding_length": 8, "min_freq": 1}]},
        "trainer": {"base_path": str(out), "max_epochs": 1, "mini_batch_size": 8},
    }
    base.update(extra)
    return base


@pytest.fixture(scope="module")
def teacher(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    return Path(train_model(config(data, out))["model"])


def error_of(err: str) -> str:
    """The one error line of a failed command: the last line of stderr (above it, only Flair's logs), no
    traceback."""
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("skd-flair: error")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in err, err
    return errors[0]


def kept(folder):
    """The one model file a run keeps: the best dev epoch's, else (no best epoch saved) the last."""
    best = folder / "best-model.pt"
    return best if best.exists() else folder / "final-model.pt"


def test_train_distill_and_results_files(data, teacher, tmp_path):
    cfg = config(data, tmp_path / "student", teacher={"path": str(teacher)},
                 unlabelled={"type": "text", "train_file": str(data / "raw.txt")},
                 kd={"objective": {"type": "structural", "temperature": 2.0}, "mix": {"type": "constant", "weight": 0.5}})
    result = distill(cfg)
    saved = json.loads((tmp_path / "student" / "results.json").read_text())
    unique = {tuple(t.text for t in s) for s in toy.sentences(40, 0) + toy.sentences(15, 9)}
    assert saved["kd"]["annotation"]["sentences"] == len(unique) and "test_score" in saved
    assert result["kd"]["history"][0]["LAMBDA"] == 0.5


def test_command_line_end_to_end(data, teacher, tmp_path, capfd):
    capsys = capfd  # file-descriptor level: `speed` measures in child processes, whose output counts too
    cfg_path = tmp_path / "kd.yaml"
    cfg_path.write_text(yaml.safe_dump(config(data, tmp_path / "s", teacher={"path": str(teacher)},
                                              kd={"objective": "structural"})))
    assert main(["annotate", str(cfg_path)]) == 0
    assert main(["distill", str(cfg_path), "-o", "trainer.max_epochs=1", "-o", "model.use_crf=false"]) == 0
    model = kept(tmp_path / "s")
    assert sorted(p.name for p in (tmp_path / "s").glob("*-model.pt")) == [model.name]  # one model a run
    assert main(["evaluate", "--model", str(model), "--config", str(cfg_path)]) == 0
    assert "main_score" in capsys.readouterr().out
    raw = data / "raw.txt"
    assert main(["predict", "--model", str(model), "--input", str(raw), "--output", str(tmp_path / "p.tsv")]) == 0
    lines = (tmp_path / "p.tsv").read_text().split("\n\n")
    assert len([b for b in lines if b.strip()]) == 15
    capsys.readouterr()
    assert main(["speed", "--model", str(model), "--model", str(teacher), "--config", str(cfg_path),
                 "--sentences", "6", "--batch-size", "1", "--batch-size", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report) == [str(model), str(teacher)]
    for path, row in report.items():
        assert row["size_mb"] == round(Path(path).stat().st_size / 2 ** 20, 2)
        assert set(row["predict"]) == {"batch_1", "batch_4"} and row["load_seconds"] > 0
        assert "fast_predict" not in row  # one-hot embeddings: no fast path, said by its absence


@pytest.mark.parametrize("change, message", [
    ({"extra_section": {}}, "unknown configuration section"),
    ({"trainer": {"base_path": "x", "max_epoch": 3}}, "unknown key.*max_epoch"),
    ({"kd": {"objectiv": "structural"}}, "kd: unknown key"),
    ({"teacher": {"path": "missing/teacher.pt"}}, "does not exist"),
    ({"corpus": {"type": "column", "data_folder": "/nonexistent/folder", "column_format": {0: "text"}}},
     "/nonexistent/folder"),
    ({"model": {"type": "tagger", "tag_type": "ner", "embeddings": [{"type": "onehot", "dim": 3}]}}, "dim"),
    ({"kd": {"objective": {"type": "structural", "temperatur": 2}}}, "temperatur"),
])
def test_bad_configurations_name_the_key_or_path(data, teacher, tmp_path, change, message):
    cfg = config(data, tmp_path, teacher={"path": str(teacher)}, kd={"objective": "structural"})
    cfg.update(change)
    with pytest.raises(ConfigError, match=message):
        distill(cfg)


def test_command_line_reports_errors_without_a_traceback(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nothing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("corpus: {type: column}\n")
    assert main(["train", str(bad), "-o", "nonsense"]) == 2
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(bad, ["nonsense"])


@pytest.mark.parametrize("damage", ["garbage", "truncated", "text"])
def test_a_damaged_model_file_is_one_clear_line(data, teacher, tmp_path, capsys, damage):
    bad = tmp_path / "model.pt"
    whole = teacher.read_bytes()
    bad.write_bytes({"garbage": bytes(range(256)) * 40, "truncated": whole[:len(whole) // 2],
                     "text": b"this is not a model\n"}[damage])
    assert main(["predict", "--model", str(bad), "--input", str(data / "raw.txt"),
                 "--output", str(tmp_path / "p.tsv")]) == 2
    assert "not a complete Flair model file" in error_of(capsys.readouterr().err)


def blocks_of(text):
    """Token columns of predict's tsv/conll output: every blank line ends one sentence (an empty one too)."""
    blocks, tokens = [], []
    for line in text.split("\n")[:-1]:
        if line:
            tokens.append(line.split("\t")[0])
        else:
            blocks.append(tokens)
            tokens = []
    return blocks


def test_predict_keeps_sentences_aligned_and_names_undecodable_lines(teacher, tmp_path, capsys):
    raw = tmp_path / "in.txt"
    raw.write_bytes("\ufeffAnna went to Berlin\n \t \nBob\vsaw Paris\n\nthe end\n".encode("utf-8"))
    out = tmp_path / "out.tsv"
    assert main(["predict", "--model", str(teacher), "--input", str(raw), "--output", str(out)]) == 0
    expected = [["Anna", "went", "to", "Berlin"], [], ["Bob", "saw", "Paris"], [], ["the", "end"]]
    assert blocks_of(out.read_text()) == expected  # one block per input line, blank ones empty
    assert main(["predict", "--model", str(teacher), "--input", str(raw), "--output", str(out),
                 "--output-format", "jsonl"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["tokens"] for r in records] == expected
    for r in records:
        assert len(r["tags"]) == len(r["scores"]) == len(r["tokens"])
        in_spans = sorted(i for span in r["spans"] for i in range(span["start"], span["end"]))
        assert in_spans == [i for i, tag in enumerate(r["tags"]) if tag != "O"]
        assert all(r["scores"][i] == pytest.approx(span["score"]) for span in r["spans"]
                   for i in range(span["start"], span["end"]))
    assert main(["predict", "--model", str(teacher), "--input", str(raw), "--output", str(out),
                 "--output-format", "conll"]) == 0
    rows = [line.split("\t") for line in out.read_text().splitlines() if line]
    assert [row[:2] for row in rows] == [[w, t] for r in records for w, t in zip(r["tokens"], r["tags"])]
    assert [row[2] for row in rows] == [f"{x:.4f}" if x is not None else "_" for r in records for x in r["scores"]]
    assert main(["predict", "--model", str(teacher), "--input", str(raw), "--output", str(out),
                 "--output-format", "conllu"]) == 2
    assert "conllu is for parsers" in capsys.readouterr().err
    raw.write_bytes("K\u00f6ln\n".encode("utf-8") + "M\u00fcnchen\n".encode("latin-1"))
    capsys.readouterr()
    assert main(["predict", "--model", str(teacher), "--input", str(raw), "--output", str(out)]) == 2
    assert "in.txt line 2 is not valid utf-8 text" in error_of(capsys.readouterr().err)
    assert main(["predict", "--model", str(teacher), "--input", str(raw), "--output", str(out),
                 "--encoding", "latin-1"]) == 0


def test_evaluating_on_a_corpus_without_the_models_labels_is_an_error(data, teacher, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config(data, tmp_path / "x")))
    assert main(["evaluate", "--model", str(teacher), "--config", str(cfg)]) == 0
    capsys.readouterr()
    unlabelled = config(data, tmp_path / "x")
    unlabelled["corpus"]["column_format"] = {0: "text", 1: "pos"}  # the tags read as another label type
    cfg.write_text(yaml.safe_dump(unlabelled))
    assert main(["evaluate", "--model", str(teacher), "--config", str(cfg)]) == 2
    assert "holds no 'ner' labels" in capsys.readouterr().err


UD = __import__("pathlib").Path(__file__).resolve().parents[1] / "resources" / "data" / "ud_en_ewt"


def test_parser_and_span_teachers_through_configurations(tmp_path, data):
    small = {"type": "onehot", "embedding_length": 8, "min_freq": 1}
    ud = {"type": "ud", "data_folder": str(UD), "sample_train": 30, "sample_dev": 10, "sample_test": 10}
    trainer = {"max_epochs": 1, "mini_batch_size": 8}
    train_model({"corpus": ud, "model": {"type": "parser", "embeddings": [small], "hidden_size": 8, "lstm_layers": 1,
                                         "arc_mlp": 8, "rel_mlp": 8, "projective": True},
                 "trainer": {**trainer, "base_path": str(tmp_path / "parser")}})
    result = distill({"corpus": ud, "teacher": {"path": str(kept(tmp_path / "parser")), "type": "parser"},
                      "model": {"type": "dependency_tagger", "embeddings": [small], "hidden_size": 8, "rnn_layers": 1},
                      "kd": {"objective": {"type": "structural", "arc_marginals": "tree"}},
                      "trainer": {**trainer, "base_path": str(tmp_path / "sl")}})
    assert result["kd"]["annotation"]["sentences"] == 30
    raw = tmp_path / "raw.txt"
    raw.write_text("the cat sat\n\nI saw it here\n", encoding="utf-8")
    assert main(["predict", "--model", str(kept(tmp_path / "parser")), "--type", "parser", "--input", str(raw),
                 "--output", str(tmp_path / "parsed.conllu")]) == 0
    rows, block = [], []
    for line in (tmp_path / "parsed.conllu").read_text().split("\n")[:-1]:  # a blank line ends each sentence
        if line:
            block.append(line.split("\t"))
        else:
            rows, block = rows + [block], []
    assert [[r[1] for r in block] for block in rows] == [["the", "cat", "sat"], [], ["I", "saw", "it", "here"]]
    for block in rows:
        assert all(len(r) == 10 and r[0] == str(i) and 0 <= int(r[6]) <= len(block) and r[7] not in ("", "_")
                   for i, r in enumerate(block, 1))
        assert sum(r[6] == "0" for r in block) == (1 if block else 0)  # a tree: one root
    corpus = {"type": "column", "data_folder": str(data), "column_format": {0: "text", 1: "ner"}}
    train_model({"corpus": corpus, "model": {"type": "span_ner", "tag_type": "ner", "embeddings": [small],
                                             "hidden_size": 8, "mlp_size": 8, "max_width": 4},
                 "trainer": {**trainer, "base_path": str(tmp_path / "spans")}})
    result = distill({"corpus": corpus, "teacher": {"path": str(kept(tmp_path / "spans")),
                                                    "type": "span_ner"},
                      "model": {"type": "tagger", "tag_type": "ner", "use_crf": False, "hidden_size": 8,
                                "embeddings": [small]},
                      "kd": {"objective": "structural"}, "trainer": {**trainer, "base_path": str(tmp_path / "st")}})
    assert result["kd"]["history"]


def test_every_ready_configuration_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = sorted(root.glob("resources/configs/**/*.yaml")) + sorted(root.glob("experiments/configs/**/*.yaml"))
    assert len(files) >= 20
    for path in files:
        check_config(path, files=False)  # they name files that earlier steps, or other machines, make
    with pytest.raises(ConfigError, match="temperatur"):
        check_config({"kd": {"objective": {"type": "structural", "temperatur": 2}}})
    with pytest.raises(ConfigError, match="embeddings\\[1\\]"):
        check_config({"model": {"type": "tagger", "tag_type": "ner", "embeddings": [{"type": "glove"},
                                                                                       {"type": "char", "dim": 2}]}})
    text_only = {"corpus": {"type": "column", "data_folder": "x", "column_format": {0: "text", 1: "ner"}},
                 "teacher": {"path": "t.pt"},
                 "kd": {"mix": {"type": "constant", "weight": 0.0}}}
    with pytest.raises(ConfigError, match="the teacher would teach nothing"):
        check_config(text_only, files=False)
    check_config({**text_only, "unlabelled": {"type": "text", "train_file": "raw.txt"}}, files=False)


def test_zero_shot_student_learns_from_unlabelled_text_alone(data, teacher, tmp_path):
    cfg = config(data, tmp_path / "zs", teacher={"path": str(teacher)},
                 unlabelled={"type": "text", "train_file": str(data / "raw.txt")}, kd={"objective": "structural"})
    cfg["corpus"] = {**cfg["corpus"], "sample_train": 0}  # no gold training sentences at all
    cfg["model"] = {**cfg["model"], "tag_dictionary": "teacher"}
    result = distill(cfg)
    history = result["kd"]["history"]
    assert history[-1]["GOLD_LOSS"] == 0.0 and history[-1]["KD_LOSS"] > 0


def test_distill_refuses_unlabelled_text_whose_labels_trained_the_teacher(data, teacher, tmp_path):
    from skd_flair.models import DistillableTagger
    from skd_flair.training.cache import sentence_key
    from skd_flair.training.provenance import TRAINING_SENTENCES

    card = DistillableTagger.load(str(teacher)).model_card[TRAINING_SENTENCES]
    assert set(card) == {sentence_key(s) for s in toy.sentences(40, 0)}
    own_text = {"type": "text", "format": "column", "data_folder": str(data), "train_file": "train.txt",
                "skip_train": 20}  # the second half of the teacher's own training file
    cfg = config(data, tmp_path / "leak", teacher={"path": str(teacher)}, unlabelled=own_text,
                 kd={"objective": "structural"})
    cfg["corpus"] = {**cfg["corpus"], "sample_train": 20}
    with pytest.raises(ConfigError, match=r"label leak: the teacher was trained on the gold labels of \d+ of the"):
        distill(cfg)
    cfg["kd"] = {**cfg["kd"], "allow_label_leak": True}  # said out loud, it runs
    assert distill(cfg)["kd"]["annotation"]["sentences"] > 0


@pytest.mark.parametrize("change, message", [
    ({"model": {"use_crf": "yes"}}, "model: use_crf: input should be a valid boolean, got 'yes'"),
    ({"model": {"hidden_size": "sixty-four"}}, "hidden_size: input should be a valid integer"),
    ({"trainer": {"learning_rate": "fast"}}, "trainer: learning_rate: input should be a valid number"),
    ({"trainer": {"learning_rate": -0.1}}, "learning_rate: input should be greater than 0"),
    ({"kd": {"objective": {"type": "structural", "temperature": -1}}}, "temperature: input should be greater than 0"),
    ({"kd": {"objective": "structural", "mix": {"type": "annealed", "factor": "two"}}}, "factor: input should be a valid number"),
    ({"trainer": {"base_path": None}}, "missing required key base_path"),
    ({"teacher": None}, "kd: a distillation needs a teacher"),
    ({"corpus": {"data_folder": "/nonexistent/data"}}, "data_folder '/nonexistent/data' does not exist"),
    ({"teacher": {"path": "/nonexistent/teacher.pt"}}, "teacher: model file /nonexistent/teacher.pt does not exist"),
    ({"trainer": {"optimizer": "Adamax"}}, "trainer.optimizer must be one of SGD, Adam, AdamW, got 'Adamax'"),
    ({"trainer": {"anneal_with_restarts": True}}, "trainer.anneal_with_restarts reloads best-model.pt, which a run"),
    ({"trainer": {"save_final_model": False}}, "save_final_model: false with the last weights kept .* leaves the run "
                                                "no model"),
])
def test_check_rejects_wrong_types_ranges_and_missing_things(data, teacher, tmp_path, capsys, change, message):
    cfg = config(data, tmp_path / "s", teacher={"path": str(teacher)}, kd={"objective": "structural"})
    for section, values in change.items():
        if values is None:
            cfg.pop(section)
            continue
        for key, value in values.items():
            if value is None:
                cfg[section].pop(key)
            else:
                cfg[section][key] = value
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["check", str(path)]) == 2
    err = error_of(capsys.readouterr().err)
    assert re.search(message, err), err


def test_keeping_the_best_dev_epoch_allows_what_needs_best_model_pt(data, teacher, tmp_path):
    cfg = config(data, tmp_path / "s", teacher={"path": str(teacher)}, kd={"objective": "structural"})
    cfg["trainer"].update(use_final_model_for_eval=False, anneal_with_restarts=True, save_final_model=False)
    check_config(cfg)


def test_overrides_bad_yaml_and_missing_packages_are_one_line(data, teacher, tmp_path, capsys, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config(data, tmp_path / "s")))
    assert main(["check", str(path), "-o", "model.use_crf=false"]) == 0
    capsys.readouterr()
    assert main(["train", str(path), "-o", 'model.use_crf="false"']) == 2  # a string is not a boolean
    assert "use_crf: input should be a valid boolean, got 'false'" in capsys.readouterr().err
    path.write_text("corpus: {type: column\nmodel: [\n")
    assert main(["check", str(path)]) == 2
    assert re.search(r"c\.yaml line \d+, column \d+: not valid YAML", capsys.readouterr().err)
    cfg = config(data, tmp_path / "s")
    cfg["model"]["embeddings"] = [{"type": "glove"}]
    path.write_text(yaml.safe_dump(cfg))
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    assert main(["check", str(path)]) == 2
    assert "needs the Python package 'pyarrow', which is not installed; fix: pip install pyarrow" in \
        capsys.readouterr().err


class _Killed(Exception):
    pass


def test_resume_after_a_kill_ends_with_the_uninterrupted_model(data, teacher, tmp_path):
    import torch
    from flair.trainers.plugins import TrainerPlugin

    from skd_flair.training import pipeline

    def cfg(out, **extra):
        return config(data, out, teacher={"path": str(teacher)}, kd={"objective": "structural"},
                      trainer={"base_path": str(out), "max_epochs": 3, "mini_batch_size": 8,
                               "save_final_model": True}, **extra)

    whole = distill(cfg(tmp_path / "whole"))
    reference = torch.load(tmp_path / "whole" / "final-model.pt", weights_only=False)["state_dict"]

    class KillInEpoch2(TrainerPlugin):
        @TrainerPlugin.hook
        def after_training_batch(self, **kw):
            if self.trainer.model.model_card["training_parameters"]["epoch"] == 2:
                raise _Killed()

    real = pipeline.run_trainer
    kill = lambda *a, plugins, **k: real(*a, plugins=[*plugins, KillInEpoch2()], **k)  # noqa: E731
    pipeline.run_trainer = kill
    try:
        with pytest.raises(_Killed):
            distill(cfg(tmp_path / "killed"))
    finally:
        pipeline.run_trainer = real
    folder = tmp_path / "killed"
    assert (folder / "checkpoint.pt").exists() and not (folder / "final-model.pt").exists()
    assert json.loads((folder / "run.json").read_text())["finished"] is False
    earlier = torch.load(folder / "checkpoint.pt", weights_only=True)["train_seconds"]
    # a process that kept the best dev epoch (before the default moved) left its model: Flair would test that file
    (folder / "best-model.pt").write_bytes(b"not a model")
    resumed = distill(cfg(folder))
    assert not (folder / "best-model.pt").exists() and resumed["weights"] == "last epoch"
    weights = torch.load(folder / "final-model.pt", weights_only=False)["state_dict"]
    assert weights.keys() == reference.keys() and all(torch.equal(weights[k], reference[k]) for k in weights)
    assert [h["EPOCH"] for h in resumed["kd"]["history"]] == [1, 2, 3] == [h["EPOCH"] for h in whole["kd"]["history"]]
    assert resumed["epochs"] == 3 and resumed["resumed_after_epoch"] == 1 and not (folder / "checkpoint.pt").exists()
    # the record covers the whole run: every epoch's dev score (the same as without the kill), its best epoch,
    # and the killed process's training time
    assert len(resumed["dev_score_history"]) == 3 and resumed["dev_score_history"] == whole["dev_score_history"]
    assert resumed["best_dev_epoch"] == whole["best_dev_epoch"] and resumed["train_seconds"] > earlier > 0
    assert (folder / "loss.tsv").read_text().count("EPOCH") == 1


def test_resume_refuses_a_folder_of_another_configuration(data, tmp_path):
    from skd_flair.training.pipeline import train_model

    out = tmp_path / "run"
    train_model(config(data, out))
    with pytest.raises(ConfigError, match="holds a run of another configuration"):
        train_model(config(data, out, seed=2))
    train_model(config(data, out, seed=2), overwrite=True)
    assert json.loads((out / "run.json").read_text())["finished"] is True
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "best-model.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="already holds a run"):
        train_model(config(data, stray))


def test_gradient_probe_logs_both_terms_and_leaves_training_unchanged(data, teacher, tmp_path):
    import torch

    def run(out, probe):
        kd = {"objective": {"type": "structural", "temperature": 2.0}, "probe_gradients": probe}
        return distill(config(data, out, teacher={"path": str(teacher)}, kd=kd,
                              trainer={"base_path": str(out), "max_epochs": 2, "mini_batch_size": 8,
                                       "save_final_model": True}))

    plain, probed = run(tmp_path / "plain", False), run(tmp_path / "probed", True)
    rows = probed["kd"]["history"]
    assert all(r["GRAD_NORM_KD"] > 0 and r["GRAD_NORM_GOLD"] > 0 for r in rows) and len(rows) == 2
    assert "GRAD_NORM_KD" not in plain["kd"]["history"][0]
    header = (tmp_path / "probed" / "kd_loss.tsv").read_text().splitlines()[0].split("\t")
    assert header[-2:] == ["GRAD_NORM_KD", "GRAD_NORM_GOLD"]
    a = torch.load(tmp_path / "plain" / "final-model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "probed" / "final-model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_multi_teacher_configuration_mixes_two_teachers(data, teacher, tmp_path, capsys):
    second = Path(train_model(config(data, tmp_path / "teacher2", seed=2))["model"])
    both = [{"path": str(teacher), "weight": 3}, {"path": str(second), "weight": 1}]
    result = distill(config(data, tmp_path / "s", teacher=both, kd={"objective": "structural"}))
    mixture = result["kd"]["annotation"]["teachers"]
    assert [m["weight"] for m in mixture] == [0.75, 0.25] and mixture[0]["key"] != mixture[1]["key"]
    assert result["kd"]["history"][0]["KD_LOSS"] > 0
    capsys.readouterr()
    for bad, message in (([{"path": str(teacher), "weight": -1}], r"teacher\[0\]: weight must be a number >= 0"),
                         ([{"path": str(teacher), "weigth": 1}], r"teacher\[0\]: unknown key\(s\) weigth"),
                         ([], "kd: a distillation needs a teacher section")):
        cfg = tmp_path / "bad.yaml"
        cfg.write_text(yaml.safe_dump(config(data, tmp_path / "x", teacher=bad, kd={"objective": "structural"})))
        assert main(["check", str(cfg)]) == 2
        err = error_of(capsys.readouterr().err)
        assert re.search(message, err), err
    cfg.write_text(yaml.safe_dump(config(data, tmp_path / "y", teacher=both, kd={"objective": {"type": "topk"}})))
    assert main(["annotate", str(cfg)]) == 2
    assert "teacher: Top-K targets do not mix exactly" in capsys.readouterr().err.splitlines()[-1]


def test_multi_teacher_routing_sends_each_concat_part_to_its_teacher(data, teacher, tmp_path):
    from skd_flair.training.annotate import annotate
    from skd_flair.training.models import load_model
    from skd_flair.training.pipeline import _distillation_setup, check_config

    other = tmp_path / "other"
    other.mkdir()
    for split, n, seed in (("train", 20, 5), ("dev", 5, 6), ("test", 5, 7)):
        write_column(other / f"{split}.txt", toy.sentences(n, seed))
    column = {"type": "column", "column_format": {0: "text", 1: "ner"}}
    corpus = {"type": "concat", "corpora": [{**column, "data_folder": str(data), "name": "a"},
                                            {**column, "data_folder": str(other), "name": "b"}]}
    second = Path(train_model(config(data, tmp_path / "teacher2", seed=2))["model"])
    kd = {"objective": "structural", "cache_dir": str(tmp_path / "cache")}
    routed = [{"path": str(teacher), "corpus": "a"}, {"path": str(second), "corpus": ["b"]}]
    train, student, mixture, _ = _distillation_setup(check_config(config(data, tmp_path / "s", corpus=corpus,
                                                                         teacher=routed, kd=kd)), False)
    parts = {"a": [], "b": []}
    for sentence in train.train:
        parts[sentence.get_metadata("corpus")].append(sentence)
    assert len(parts["a"]) == 40 and len(parts["b"]) == 20
    only_b = {sentence_key(s) for s in parts["b"]} - {sentence_key(s) for s in parts["a"]}
    alone = [annotate(load_model(str(path), where="t"), parts[name], student, "structural", cache_dir=False,
                      progress=False) for path, name in ((teacher, "a"), (second, "b"))]
    for name, own, foreign in (("a", alone[0], alone[1]), ("b", alone[1], alone[0])):
        for sentence in parts[name]:
            if name == "a" or sentence_key(sentence) in only_b:
                piece = mixture.piece(sentence)
                assert all(torch.equal(piece[k], own.piece(sentence)[k]) for k in piece if torch.is_tensor(piece[k]))
                assert sentence not in foreign  # the other teacher never saw it
    for teachers, message in (([{"path": str(teacher), "corpus": "c"}, {"path": str(second), "corpus": "b"}],
                               r"teacher\[0\]: corpus 'c' names no part of the training text \(its concat parts: a, b\)"),
                              ([{"path": str(teacher), "corpus": "a"}, {"path": str(second), "corpus": "a"}],
                               r"teacher: 20 training sentences belong to no teacher's corpus"),
                              ([{"path": str(teacher), "corpus": 3}, {"path": str(second)}],
                               r"teacher\[0\]: corpus must name a part")):
        with pytest.raises(ConfigError, match=message):
            _distillation_setup(check_config(config(data, tmp_path / "s", corpus=corpus, teacher=teachers, kd=kd)),
                                False)
    with pytest.raises(ConfigError, match="it is not a concat corpus"):
        _distillation_setup(check_config(config(data, tmp_path / "s", teacher=routed, kd=kd)), False)


def test_cross_fit_teaches_each_gold_sentence_by_a_teacher_that_never_trained_on_it(data, teacher, tmp_path):
    """Two teachers trained on the two halves of the gold data; under kd.cross_fit each half's targets are the
    other half's teacher's, exactly as that teacher annotates them alone."""
    from skd_flair.training.annotate import annotate
    from skd_flair.training.models import load_model
    from skd_flair.training.pipeline import _distillation_setup, check_config

    base = config(data, tmp_path)["corpus"]
    folds = [Path(train_model(config(data, tmp_path / f"fold{i}", corpus={**base, **half}))["model"])
             for i, half in enumerate(({"sample_train": 20}, {"skip_train": 20}))]
    kd = {"objective": "structural", "cache_dir": str(tmp_path / "cache"), "cross_fit": True}
    cfg = config(data, tmp_path / "s", teacher=[{"path": str(f)} for f in folds], kd=kd)
    train, student, mixture, _ = _distillation_setup(check_config(cfg), False)
    sentences = list(train.train)
    for half, other in ((sentences[:20], folds[1]), (sentences[20:], folds[0])):
        alone = annotate(load_model(str(other), where="t"), half, student, "structural", cache_dir=False,
                         progress=False)
        for sentence in half:
            piece, own = mixture.piece(sentence), alone.piece(sentence)
            assert all(torch.equal(piece[k], own[k]) for k in piece if torch.is_tensor(piece[k]))
    assert [len(m.entries) for m in mixture.members] == [20, 20]
    assert not set(mixture.members[0].entries) & {sentence_key(s) for s in sentences[:20]}
    # without cross_fit the same two teachers are an ensemble: every sentence meets its own teacher too
    ensemble = _distillation_setup(check_config({**cfg, "kd": {**kd, "cross_fit": False}}), False)[2]
    assert [len(m.entries) for m in ensemble.members] == [40, 40]
    for teachers, message in (([{"path": str(folds[0])}], "kd.cross_fit: needs a list of teachers"),
                              ([{"path": str(teacher)}, {"path": str(folds[0])}],
                               "kd.cross_fit: 20 of the 40 training sentences were in every teacher's training data")):
        with pytest.raises(ConfigError, match=message):
            _distillation_setup(check_config({**cfg, "teacher": teachers}), False)


@pytest.mark.slow
def test_sharded_annotate_with_two_processes(data, teacher, tmp_path, capsys):
    cfg = tmp_path / "kd.yaml"
    cfg.write_text(yaml.safe_dump(config(data, tmp_path / "s", teacher={"path": str(teacher)},
                                         kd={"objective": "structural", "cache_dir": str(tmp_path / "cache")})))
    capsys.readouterr()
    assert main(["annotate", str(cfg), "--nproc", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["stats"]["processes"] == 2 and result["stats"]["sentences"] == result["sentences"] > 0
    assert main(["annotate", str(cfg)]) == 0  # one process reads the file the two merged
    again = json.loads(capsys.readouterr().out)
    assert again["stats"]["cache_hit"] and (again["key"], again["sentences"]) == (result["key"], result["sentences"])
    assert main(["annotate", str(cfg), "--nproc", "0"]) == 2
    assert "--nproc must be >= 1" in capsys.readouterr().err


def test_train_prints_only_json_and_a_run_folder_names_its_model(data, tmp_path, capsys):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(config(data, tmp_path / "t")))
    capsys.readouterr()
    assert main(["train", str(cfg)]) == 0
    result = json.loads(capsys.readouterr().out)  # Flair's logs went to stderr
    assert result["model"] == str(tmp_path / "t" / "final-model.pt") and result["weights"] == "last epoch"
    assert not (tmp_path / "t" / "best-model.pt").exists()  # the default keeps one model, the last weights
    student = config(data, tmp_path / "s", teacher={"path": str(tmp_path / "t")}, kd={"objective": "structural"})
    assert distill(student)["kd"]["annotation"]["sentences"] > 0  # the folder's kept model taught
    empty = tmp_path / "empty"
    empty.mkdir()
    student["teacher"] = {"path": str(empty)}
    with pytest.raises(ConfigError, match="holds no best-model.pt or final-model.pt"):
        distill(student)


def test_distill_with_two_processes_from_the_command_line(data, teacher, tmp_path, capfd):
    """`distill --nproc 2`: each process annotates a share, the student trains through Flair's
    DistributedDataParallel path (gloo on CPU), the first process alone writes and prints."""
    from skd_flair.models import DistillableTagger

    out = tmp_path / "s"
    spec = config(data, out, teacher={"path": str(teacher)},
                  unlabelled={"type": "text", "train_file": str(data / "raw.txt")},
                  kd={"objective": "structural", "cache_dir": str(tmp_path / "cache")},
                  trainer={"base_path": str(out), "max_epochs": 2, "mini_batch_size": 8})
    cfg = tmp_path / "kd.yaml"
    cfg.write_text(yaml.safe_dump(spec))
    capfd.readouterr()
    assert main(["distill", str(cfg), "--nproc", "2"]) == 0
    result = json.loads(capfd.readouterr().out)  # one JSON document: the other process printed nothing
    assert result["processes"] == 2 and result["epochs"] == 2
    assert result["kd"]["annotation"]["processes"] == 2 and len(result["kd"]["history"]) == 2
    assert json.loads((out / "results.json").read_text())["processes"] == 2
    assert len((out / "kd_loss.tsv").read_text().splitlines()) == 3  # a header and one row an epoch, written once
    student = DistillableTagger.load(result["model"])
    sentence = toy.sentences(1, 3)[0]
    student.predict(sentence)
    assert len(sentence.get_labels("ner")) > 0 or all(t.get_label("ner").value == "O" for t in sentence)
    assert main(["distill", str(cfg), "--nproc", "2", "-o", "trainer.length_buckets=true"]) == 2
    assert "DistributedSampler" in error_of(capfd.readouterr().err)
    leak = {"type": "text", "format": "column", "data_folder": str(data), "train_file": "train.txt"}
    cfg.write_text(yaml.safe_dump({**spec, "unlabelled": leak}))
    assert main(["distill", str(cfg), "--nproc", "2", "--overwrite"]) == 2  # raised inside the processes
    assert "label leak" in error_of(capfd.readouterr().err)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has GPUs for multi_gpu")
def test_multi_gpu_without_gpus_or_processes_is_one_line(data, teacher, tmp_path, capsys):
    spec = config(data, tmp_path / "s")
    spec["trainer"]["multi_gpu"] = True
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump(spec))
    assert main(["train", str(cfg)]) == 2
    assert "give --nproc N" in error_of(capsys.readouterr().err)


def test_a_run_folder_resolves_to_the_model_its_results_name(tmp_path):
    from skd_flair.training.models import kept_model

    for name in ("best-model.pt", "final-model.pt"):
        (tmp_path / name).write_bytes(b"")
    assert kept_model(tmp_path).name == "best-model.pt"  # no results.json: as before the default moved
    for name in ("final-model.pt", "best-model.pt"):
        (tmp_path / "results.json").write_text(json.dumps({"model": f"/elsewhere/run/{name}"}))  # folder moved since
        assert kept_model(tmp_path) == tmp_path / name
    (tmp_path / "final-model.pt").unlink()
    (tmp_path / "results.json").write_text(json.dumps({"model": "final-model.pt"}))  # named but gone
    assert kept_model(tmp_path) == tmp_path / "best-model.pt"
