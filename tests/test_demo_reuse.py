"""The demo reuses a finished step only when the same configuration kept the same weights (a step trained before
the last weights became the default tested the best dev epoch's with an identical configuration)."""
import json

import pytest

from skd_flair import demo
from skd_flair.training import pipeline


@pytest.fixture
def calls(monkeypatch):
    made = []

    def train_model(config, overwrite=False):
        made.append((config["trainer"]["base_path"], config["seed"]))
        return {"test_score": 0.5}

    monkeypatch.setattr(pipeline, "train_model", train_model)
    return made


def _finished(out, seed, weights, change=None):
    folder = out / f"student_nokd-seed{seed}"
    folder.mkdir(parents=True)
    (folder / "final-model.pt").write_bytes(b"")
    config = pipeline.load_config(demo.CONFIGS / "student_nokd.yaml", [f"trainer.base_path={folder}", f"seed={seed}"])
    config.update(change or {})
    (folder / "results.json").write_text(json.dumps({"config": config, "weights": weights, "test_score": 0.7},
                                                    default=str))


def test_a_step_with_the_same_configuration_and_weights_is_reused(tmp_path, calls):
    _finished(tmp_path, 2, "last epoch")
    assert demo._step("student_nokd", "student_nokd.yaml", "train", None, tmp_path, False, seed=2)["test_score"] == 0.7
    assert calls == []


@pytest.mark.parametrize("weights, change", [("best dev epoch", {}), (None, {}), ("last epoch", {"seed": 1})])
def test_a_step_that_kept_other_weights_or_ran_another_configuration_trains_again(tmp_path, calls, weights, change):
    _finished(tmp_path, 2, weights, change)
    assert demo._step("student_nokd", "student_nokd.yaml", "train", None, tmp_path, False, seed=2)["test_score"] == 0.5
    assert calls == [(str(tmp_path / "student_nokd-seed2"), 2)]
