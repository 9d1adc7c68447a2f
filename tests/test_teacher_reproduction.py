"""`python -m experiments.run SUITE --teacher-only --reproduce`: a lost teacher trained again is adopted as the
training its students had only when it scores every test number of its record; otherwise it is moved aside."""
import json

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def runner(tmp_path, monkeypatch):
    from experiments import common, run

    monkeypatch.setattr(run, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(run, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(run, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(common, "require_shared", lambda: None)
    return run


def _lose_the_model(tmp_path):
    import shutil

    shutil.rmtree(tmp_path / "runs" / "smoke" / "teacher")


def test_a_reproduced_teacher_keeps_its_record_and_gains_a_fingerprint(tmp_path, runner):
    record = tmp_path / "results" / "smoke" / "teacher.json"
    with pytest.raises(SystemExit, match="needs .*teacher.json"):
        runner.main(["smoke", "--teacher-only", "--reproduce"])  # nothing to reproduce yet
    runner.main(["smoke", "--teacher-only"])
    first = json.loads(record.read_text())
    del first["fingerprint"]  # as a record from before fingerprints
    record.write_text(json.dumps(first))
    _lose_the_model(tmp_path)
    runner.main(["smoke", "--teacher-only", "--reproduce"])
    again = json.loads(record.read_text())
    assert again["same_training_fingerprints"] == [] and again["earlier_reproductions"] == []
    assert again["test"] == first["test"] and again["train_seconds"] == first["train_seconds"]
    assert again["reproduced"]["command"].endswith("--teacher-only --reproduce") and again["fingerprint"]
    assert again.get("previous_training") is None
    assert (tmp_path / "runs" / "smoke" / "teacher" / "best-model.pt").exists() or \
        (tmp_path / "runs" / "smoke" / "teacher" / "final-model.pt").exists()


def test_a_teacher_that_does_not_reproduce_is_moved_aside_and_the_record_kept(tmp_path, runner):
    record = tmp_path / "results" / "smoke" / "teacher.json"
    runner.main(["smoke", "--teacher-only"])
    first = json.loads(record.read_text())
    first["test"]["main"] += 1e-12  # the training its students had scored differently
    record.write_text(json.dumps(first))
    _lose_the_model(tmp_path)
    with pytest.raises(SystemExit, match="not reproduced"):
        runner.main(["smoke", "--teacher-only", "--reproduce"])
    assert json.loads(record.read_text()) == first
    assert not (tmp_path / "runs" / "smoke" / "teacher").exists()
    attempt = json.loads((tmp_path / "results" / "smoke" / "teacher_reproduction.json").read_text())
    assert attempt["reproduced"] is False and attempt["test"]["main"] == pytest.approx(first["test"]["main"])
    assert any(p.name.startswith("teacher_not_reproduced_") for p in (tmp_path / "runs" / "smoke").iterdir())


def test_the_loss_may_differ_in_its_last_digits_the_predictions_may_not():
    from experiments.run import LOSS_RTOL, _reproduces

    recorded = {"main": 0.8832294771064753, "accuracy": 0.8415, "loss": 0.10290716588497162}
    assert _reproduces({**recorded, "loss": 0.1029064729809761}, recorded)  # ner_en's two trainings, 2026-12-04
    assert not _reproduces({**recorded, "loss": recorded["loss"] * (1 + 3 * LOSS_RTOL)}, recorded)
    assert not _reproduces({**recorded, "main": recorded["main"] + 1e-12}, recorded)
    assert not _reproduces({k: v for k, v in recorded.items() if k != "accuracy"}, recorded)
    assert not _reproduces(recorded, {})


def test_a_teacher_is_reproduced_with_the_dropout_its_training_had(tmp_path, runner, monkeypatch):
    from contextlib import contextmanager

    from experiments.run import _dropout_as_before

    assert _dropout_as_before({"test": {}})  # no fingerprint: trained before frozen transformers stayed in eval
    assert _dropout_as_before({"fingerprint": "f", "reproduced": {"date": "2026-12-04"}})  # reproduced as before
    assert not _dropout_as_before({"fingerprint": "f"})  # fingerprinted: trained after the fix
    assert _dropout_as_before({"fingerprint": "f", "frozen_transformer_dropout": True})  # said outright
    entered = []

    @contextmanager
    def as_before():
        entered.append(True)
        yield

    monkeypatch.setattr(runner, "frozen_dropout_as_before", as_before)
    record = tmp_path / "results" / "smoke" / "teacher.json"
    runner.main(["smoke", "--teacher-only"])
    assert json.loads(record.read_text())["frozen_transformer_dropout"] is False and not entered
    _lose_the_model(tmp_path)
    runner.main(["smoke", "--teacher-only", "--reproduce"])  # a training after the fix: trained again without it
    assert not entered and json.loads(record.read_text())["frozen_transformer_dropout"] is False
    first = json.loads(record.read_text())
    first.pop("frozen_transformer_dropout")
    first.pop("fingerprint")  # as a record from before fingerprints
    record.write_text(json.dumps(first))
    _lose_the_model(tmp_path)
    runner.main(["smoke", "--teacher-only", "--reproduce"])
    assert entered == [True] and json.loads(record.read_text())["frozen_transformer_dropout"] is True


def test_a_killed_reproduction_never_resumes_as_an_ordinary_training():
    """A teacher's checkpoint resumes under its run hash: a `--reproduce` run (frozen transformers' dropout on)
    killed half way must not be taken up by a plain `--teacher-only` (dropout off), as happened to ner_de once."""
    from experiments.run import _teacher_run_hash
    from experiments.suites import SUITES
    from skd_flair.training.resume import config_hash

    suite = SUITES["smoke"]
    trainer = {**suite.teacher_trainer, "base_path": "somewhere"}
    plain, as_before = _teacher_run_hash(suite, trainer, False), _teacher_run_hash(suite, trainer, True)
    assert plain != as_before
    # the ordinary training's hash is the one its checkpoints were written under before the mode counted
    assert plain == config_hash([suite.corpus, suite.teacher, trainer])
