"""``trainer.max_minutes``: stop training cleanly once a wall-clock budget is spent."""
from __future__ import annotations

import logging
import time
from typing import Callable, Optional

from flair.trainers.plugins import TrainerPlugin, TrainingInterrupt

from .distributed import any_rank

log = logging.getLogger("flair")

__all__ = ["TimeBudgetPlugin", "TIME_BUDGET"]

TIME_BUDGET = "time budget"  # the value of results.json's "stopped_early" when this plugin stopped the run


def _now() -> float:
    return time.monotonic()


class TimeBudgetPlugin(TrainerPlugin):
    """Stops ``ModelTrainer.train`` / ``fine_tune`` once `max_minutes` have passed since setup.

    The clock is read after every training batch and before every epoch. When the budget is spent the plugin
    raises Flair's ``TrainingInterrupt``, the same way Flair's own annealing plugin stops a run whose learning
    rate fell below ``min_learning_rate``: the trainer saves ``final-model.pt`` (the current weights) and then
    evaluates the test split with them, or with ``best-model.pt``, the best dev epoch so far, when the run keeps
    that one (``use_final_model_for_eval: false``). The epoch
    that was running is not evaluated. ``stopped`` says whether the budget ended the run."""

    def __init__(self, max_minutes: float, clock: Optional[Callable[[], float]] = None):
        super().__init__()
        if not max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0, got {max_minutes!r}")
        self.max_minutes = float(max_minutes)
        self.clock = clock
        self.start: Optional[float] = None
        self.stopped = False
        self.stopped_at: Optional[str] = None

    def _elapsed_minutes(self) -> float:
        now = (self.clock or _now)()
        if self.start is None:
            self.start = now
        return (now - self.start) / 60.0

    def _check(self, where: str):
        elapsed = self._elapsed_minutes()
        if any_rank(elapsed >= self.max_minutes):  # processes stop together, or DDP waits for the one that left
            self.stopped, self.stopped_at = True, where
            raise TrainingInterrupt(f"time budget of {self.max_minutes:g} minutes spent ({elapsed:.2f} min, {where}) "
                                    "- stopping; the test score is the best dev epoch's")

    @TrainerPlugin.hook
    def after_setup(self, **kw):
        self.start, self.stopped, self.stopped_at = None, False, None
        self._elapsed_minutes()

    @TrainerPlugin.hook
    def before_training_epoch(self, epoch, **kw):
        self._check(f"before epoch {epoch}")

    @TrainerPlugin.hook
    def after_training_batch(self, epoch, batch_no, total_number_of_batches, **kw):
        self._check(f"epoch {epoch}, after batch {batch_no + 1}/{total_number_of_batches}")

    def get_state(self):
        return {**super().get_state(), "max_minutes": self.max_minutes}

    def __str__(self):
        return f"TimeBudget | max_minutes: {self.max_minutes:g}"
