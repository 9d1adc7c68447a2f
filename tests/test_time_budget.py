"""trainer.max_minutes: a run stops cleanly at its time budget (the clock is faked), keeps its model (the last
weights, or the best dev epoch's) and says so in results.json."""
import json

import pytest

from skd_flair.registry import ConfigError
from skd_flair.training import budget
from skd_flair.training.pipeline import check_config, train_model
from tests.test_cli import config, data  # noqa: F401  (data: the toy column corpus fixture)

pytestmark = pytest.mark.slow


class FakeClock:
    """Every reading is `step` seconds after the previous one."""

    def __init__(self, step: float):
        self.now, self.step, self.readings = 0.0, step, 0

    def __call__(self):
        self.now += self.step
        self.readings += 1
        return self.now


@pytest.mark.parametrize("keep", ["best dev epoch", "last epoch"])
def test_training_stops_at_the_time_budget_and_keeps_its_model(data, tmp_path, monkeypatch, keep):
    clock = FakeClock(step=6.0)  # 0.1 minute a reading: setup, then one before each epoch and one per batch
    monkeypatch.setattr(budget, "_now", clock)
    cfg = config(data, tmp_path / "run")
    # 40 sentences / 8 = 5 batches: 6 readings (0.6 min) an epoch; 2.8 min run out in epoch 5, after batch 3
    cfg["trainer"].update(max_epochs=20, learning_rate=0.5, max_minutes=2.8)
    if keep == "best dev epoch":
        cfg["trainer"]["use_final_model_for_eval"] = False
    result = train_model(cfg)
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["stopped_early"] == "time budget" == result["stopped_early"]
    assert saved["epochs"] == 4 and len(saved["dev_score_history"]) == 4
    assert isinstance(saved["test_score"], float)  # the kept model's score: checked below
    kept, other = ("best-model.pt", "final-model.pt") if keep == "best dev epoch" else ("final-model.pt",
                                                                                        "best-model.pt")
    assert max(saved["dev_score_history"]) > 0 and (tmp_path / "run" / kept).exists()
    assert not (tmp_path / "run" / other).exists() and result["model"].endswith(kept) and saved["weights"] == keep
    assert json.loads((tmp_path / "run" / "run.json").read_text())["finished"] is True
    log = (tmp_path / "run" / "training.log").read_text()
    assert "time budget of 2.8 minutes spent" in log and "epoch 5, after batch 3/5" in log
    # the test score is the kept model's, as when Flair itself ends a run early
    from skd_flair.models import DistillableTagger
    from skd_flair.training.corpora import load_corpus

    model = DistillableTagger.load(tmp_path / "run" / kept)
    score = model.evaluate(load_corpus(cfg["corpus"]).test, gold_label_type="ner").main_score
    assert score == pytest.approx(saved["test_score"])


def test_a_run_within_its_budget_says_it_did_not_stop_early(data, tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "_now", FakeClock(step=0.001))
    cfg = config(data, tmp_path / "run")
    cfg["trainer"].update(max_epochs=2, max_minutes=60)
    result = train_model(cfg)
    assert result["stopped_early"] is None and result["epochs"] == 2


@pytest.mark.parametrize("value, message", [
    (0, "max_minutes: input should be greater than 0"),
    ("ten", "max_minutes: input should be a valid number"),
])
def test_max_minutes_is_checked(data, tmp_path, value, message):
    cfg = config(data, tmp_path / "run")
    cfg["trainer"]["max_minutes"] = value
    with pytest.raises(ConfigError, match=message):
        check_config(cfg)
    cfg["trainer"]["max_minutes"] = 0.5
    check_config(cfg)


def test_kd_section_values_are_checked(data, tmp_path):
    cfg = config(data, tmp_path / "run", teacher={"path": "hub-id"}, kd={"objective": "structural", "batch_size": 0})
    with pytest.raises(ConfigError, match="kd: batch_size: input should be greater than or equal to 1"):
        check_config(cfg, files=False)
    cfg["kd"] = {"objective": "structural", "probe_gradients": "yes"}
    with pytest.raises(ConfigError, match="kd: probe_gradients: input should be a valid boolean"):
        check_config(cfg, files=False)
