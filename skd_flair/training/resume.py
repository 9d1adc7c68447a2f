"""Training that survives being killed: a checkpoint per epoch, resumed to the same final model.

A run folder (``trainer.base_path``) holds ``run.json``: the hash of the run's configuration and whether it
finished. At the start of every epoch after the first, :class:`ResumePlugin` writes ``checkpoint.pt`` atomically:
model and optimizer state, Flair's plateau scheduler, the KD plugin's log, Flair's metric histories, every random
generator state, the epoch, the best dev score and the training seconds so far (a resumed run reports its whole
history and time, not only the last process's). Rerunning the same configuration in that folder continues after
the last finished epoch and ends with the same model an uninterrupted run of the same seed ends with (up to float
rounding where embeddings stored in memory, ``embeddings_storage_mode: cpu``, are computed again in other
batches); a folder holding another configuration's run is refused unless the caller asks to overwrite it. Best and
final models are written atomically (Flair's own save is not: a kill could leave a 0-byte ``best-model.pt``), and
a resumed run never replaces a better ``best-model.pt`` with a worse one.

The checkpoint is written by us and read back with ``torch.load(weights_only=True)``: tensors, numbers,
strings and containers only, so loading it runs no code.
"""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
from flair.trainers.plugins import TrainerPlugin

from ..registry import ConfigError
from . import atomic_path
from .cache import digest
from .distributed import is_main_process

log = logging.getLogger("skd_flair")

RUN_FILE, CHECKPOINT = "run.json", "checkpoint.pt"
# what an earlier run leaves in its folder; cleared before a fresh run so nothing stale sits beside new results
OUTPUTS = ("best-model.pt", "final-model.pt", "checkpoint.pt", "results.json", "test.tsv", "dev.tsv", "loss.tsv",
           "kd_loss.tsv", "training.log")

__all__ = ["config_hash", "prepare_run", "ResumePlugin", "finish_run"]


def config_hash(config: Any) -> str:
    return digest("skd-run", config)[:16]


def _read(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")


def prepare_run(base_path: Path, run_hash: str, overwrite: bool = False, resume: bool = True) -> Optional[dict]:
    """Ready ``base_path`` for a run of configuration ``run_hash``; return the checkpoint to resume from, or None.

    Resumes an unfinished run of the same configuration (unless ``resume`` is False); refuses a folder that
    holds another configuration's run unless ``overwrite``; otherwise clears the earlier run's outputs."""
    base_path.mkdir(parents=True, exist_ok=True)
    record = _read(base_path / RUN_FILE)
    earlier = [name for name in OUTPUTS if (base_path / name).exists()]
    if record is None and earlier and not overwrite:
        raise ConfigError(f"{base_path} already holds a run ({', '.join(earlier)}) that this one did not make; "
                          "use another trainer.base_path, or --overwrite")
    if record is not None and record.get("config_hash") != run_hash and not overwrite:
        raise ConfigError(f"{base_path} holds a run of another configuration (hash {record.get('config_hash')}, "
                          f"this one {run_hash}); use another trainer.base_path, or --overwrite")
    checkpoint = None
    if (resume and record is not None and record.get("config_hash") == run_hash and not record.get("finished")
            and (base_path / CHECKPOINT).exists()):
        try:
            checkpoint = torch.load(base_path / CHECKPOINT, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001  (a damaged checkpoint: start again)
            log.warning(f"checkpoint {base_path / CHECKPOINT} is unreadable ({error}); training from the start")
    if checkpoint is None:
        for name in earlier:
            (base_path / name).unlink()
    else:
        log.info(f"resuming {base_path} after epoch {checkpoint['epoch']}")
    _write_json(base_path / RUN_FILE, {"config_hash": run_hash, "finished": False})
    return checkpoint


def finish_run(base_path: Path, run_hash: str):
    _write_json(base_path / RUN_FILE, {"config_hash": run_hash, "finished": True})
    (base_path / CHECKPOINT).unlink(missing_ok=True)


def _rng_state() -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": _python_state(), "numpy": _numpy_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_state():
    version, internal, gauss = random.getstate()
    return {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss}


def _numpy_state():
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
            "cached": cached}


def _set_rng_state(state: Dict[str, Any]):
    torch.set_rng_state(state["torch"])
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"].tolist()), p["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _scheduler_plugin(trainer):
    for plugin in getattr(trainer, "plugins", []):
        if hasattr(plugin, "scheduler") and hasattr(plugin.scheduler, "num_bad_epochs"):
            return plugin
    return None


class ResumePlugin(TrainerPlugin):
    """Checkpoints each epoch and restores a checkpoint (see the module docstring). Attach it before Flair's
    annealing plugin (``ModelTrainer.train`` appends that one last), so its state is taken before that plugin
    starts the next epoch."""

    def __init__(self, base_path: Path, checkpoint: Optional[dict] = None):
        super().__init__()
        self.base_path = Path(base_path)
        self.checkpoint = checkpoint
        self.best = None if checkpoint is None else checkpoint["best"]
        self.save_best = True
        self.started = time.time()
        # what the checkpoint brings from earlier processes: training seconds, and whether the metric histories
        # were restored (checkpoints from before 2026-12-03 lack both; their histories start after the resume)
        self.earlier_seconds = 0.0 if checkpoint is None else float(checkpoint.get("train_seconds", 0.0))
        self.histories_restored = checkpoint is not None and checkpoint.get("metric_history") is not None

    def train_seconds(self) -> float:
        return self.earlier_seconds + time.time() - self.started

    @TrainerPlugin.hook
    def after_setup(self, **kw):
        trainer = self.trainer
        save = trainer._save_model

        def atomic_save(model_file, checkpoint: bool = False):
            model_file = Path(model_file)
            if model_file.name == "best-model.pt" and not self.save_best:
                return  # Flair's own best score restarts at 0 on resume; ours knows the run's best
            if not is_main_process():  # Flair writes from the first process; the others only meet its barrier
                save(model_file, checkpoint)
                return
            with atomic_path(model_file) as tmp:
                save(tmp, checkpoint)

        trainer._save_model = atomic_save

    @TrainerPlugin.hook
    def before_training_epoch(self, epoch, **kw):
        if self.checkpoint is not None:
            self._restore(self.checkpoint)
            self.checkpoint = None
        elif epoch > 1:
            self._save(epoch - 1)

    @TrainerPlugin.hook
    def after_evaluation(self, current_model_is_best, validation_scores, **kw):
        score = validation_scores[0] if validation_scores else None
        if score is None:
            self.save_best = current_model_is_best
            return
        self.save_best = self.best is None or score > self.best
        if self.save_best:
            self.best = float(score)

    def _kd_plugin(self):
        for plugin in getattr(self.trainer, "plugins", []):
            if hasattr(plugin, "history") and hasattr(plugin, "targets"):
                return plugin
        return None

    def _history_plugin(self):
        for plugin in getattr(self.trainer, "plugins", []):
            if isinstance(getattr(plugin, "metric_history", None), dict):
                return plugin
        return None

    def _save(self, epoch: int):
        if not is_main_process():  # every process holds the same weights (DDP); one writes them
            return
        scheduler = _scheduler_plugin(self.trainer)
        kd, history = self._kd_plugin(), self._history_plugin()
        state = {"epoch": epoch, "best": self.best, "model": self.model.state_dict(),
                 "optimizer": self.trainer.optimizer.state_dict(), "rng": _rng_state(),
                 "scheduler": None if scheduler is None else {k: v for k, v in vars(scheduler.scheduler).items()
                                                              if k != "optimizer"},
                 "kd_history": None if kd is None else json.dumps(kd.history),
                 "metric_history": None if history is None else json.dumps(history.metric_history),
                 "train_seconds": self.train_seconds()}
        with atomic_path(self.base_path / CHECKPOINT) as tmp:
            torch.save(state, tmp)

    def _restore(self, state: dict):
        self.model.load_state_dict(state["model"])
        self.trainer.optimizer.load_state_dict(state["optimizer"])
        scheduler = _scheduler_plugin(self.trainer)
        if scheduler is not None and state["scheduler"] is not None:
            for key, value in state["scheduler"].items():
                setattr(scheduler.scheduler, key, value)
            scheduler.store_learning_rate()
        kd = self._kd_plugin()
        if kd is not None and state["kd_history"] is not None:
            kd.history[:] = json.loads(state["kd_history"])
        history = self._history_plugin()
        if history is not None and state.get("metric_history") is not None:
            for key, values in json.loads(state["metric_history"]).items():
                history.metric_history.setdefault(key, [])[:0] = values
        _set_rng_state(state["rng"])

    def get_state(self):
        return {**super().get_state(), "base_path": str(self.base_path)}
