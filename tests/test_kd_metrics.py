"""The KD diagnostics reach Flair's metric records (what TensorboardLogger and the other logger plugins read), and
``trainer.plugins: [tensorboard]`` maps to Flair's TensorboardLogger or names the extra to install."""
import importlib.util
import json

import pytest
import yaml
from flair.trainers.plugins import TrainerPlugin

from skd_flair.cli import main
from skd_flair.registry import ConfigError
from skd_flair.training.pipeline import check_config, distill, train_model
from tests.test_cli import config, data  # noqa: F401  (data: the toy column corpus fixture)

pytestmark = pytest.mark.slow

KD_NAMES = ["kd/lambda", "kd/gold_loss", "kd/kd_loss", "kd/kl_per_token", "kd/teacher_entropy",
            "kd/argmax_agreement", "kd/grad_norm_kd", "kd/grad_norm_gold"]


@pytest.fixture(scope="module")
def teacher(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    train_model(config(data, out))
    return out / "final-model.pt"


class Recorder(TrainerPlugin):
    """Stands in for Flair's TensorboardLogger: takes the same log_dir and keeps every metric record."""

    made = []

    def __init__(self, log_dir=None, comment="", tracked_metrics=()):
        super().__init__()
        self.log_dir, self.records = log_dir, []
        Recorder.made.append(self)

    @TrainerPlugin.hook
    def metric_recorded(self, record):
        if record.is_scalar:
            self.records.append((str(record.name), record.value, record.global_step))


def _tensorboard_installed(monkeypatch, installed: bool):
    real = importlib.util.find_spec
    fake = object()
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (fake if installed else None) if name == "tensorboard" else real(name, *a))


def test_a_logger_plugin_receives_the_kd_metrics_every_epoch(data, teacher, tmp_path, monkeypatch):
    import flair.trainers.plugins

    _tensorboard_installed(monkeypatch, True)
    monkeypatch.setattr(flair.trainers.plugins, "TensorboardLogger", Recorder)
    Recorder.made.clear()
    cfg = config(data, tmp_path / "s", teacher={"path": str(teacher)},
                 kd={"objective": "structural", "mix": {"type": "constant", "weight": 0.5}, "probe_gradients": True})
    cfg["trainer"].update(max_epochs=2, plugins=["tensorboard"])
    result = distill(cfg)
    assert len(Recorder.made) == 1
    recorder = Recorder.made[0]
    assert recorder.log_dir == str(tmp_path / "s" / "tensorboard")
    kd = [(name, value, step) for name, value, step in recorder.records if name.startswith("kd/")]
    assert [name for name, _, step in kd if step == 1] == KD_NAMES
    assert [name for name, _, step in kd if step == 2] == KD_NAMES
    history = result["kd"]["history"]
    for name, value, step in kd:
        assert value == pytest.approx(history[step - 1][name[3:].upper()])
    assert dict(((n, s), v) for n, v, s in kd)[("kd/lambda", 1)] == 0.5
    # Flair's own metrics come through the same plugin; loss.tsv keeps Flair's columns only
    assert {"train/loss", "dev/loss"} <= {name for name, _, _ in recorder.records}
    assert "KD_LOSS" not in (tmp_path / "s" / "loss.tsv").read_text().splitlines()[0]
    assert json.loads((tmp_path / "s" / "results.json").read_text())["config"]["trainer"]["plugins"] == ["tensorboard"]


def test_tensorboard_without_its_package_is_one_line_naming_the_extra(data, tmp_path, capsys, monkeypatch):
    _tensorboard_installed(monkeypatch, False)
    cfg = config(data, tmp_path / "s")
    cfg["trainer"]["plugins"] = ["tensorboard"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    for command in ("check", "train"):
        assert main([command, str(path)]) == 2
        from tests.test_cli import error_of

        assert "skd_flair[tensorboard]" in error_of(capsys.readouterr().err)
    assert not (tmp_path / "s" / "final-model.pt").exists()
    check_config(cfg, files=False)  # a configuration for another machine is still valid


@pytest.mark.parametrize("plugins, message", [
    (["wandb"], "trainer: plugins"),
    ("tensorboard", "trainer: plugins"),
])
def test_unknown_trainer_plugins_are_refused(data, tmp_path, plugins, message):
    cfg = config(data, tmp_path / "s")
    cfg["trainer"]["plugins"] = plugins
    with pytest.raises(ConfigError, match=message):
        check_config(cfg, files=False)
