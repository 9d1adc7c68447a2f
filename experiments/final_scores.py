"""Test scores of a run's final model as well as its best dev epoch's.

Flair tests the model of the best dev epoch. When the dev score is flat for many epochs, that choice falls on
whichever epoch the dev noise favours, sometimes an early one that later epochs only tie (issue 21: a student
that "stops improving"). Scoring the last weights too says whether the choice, not the training, costs test
score. Flair ends an annealed run by interrupting it (`training_interrupt`) and a run that used all its epochs
after the loop (`after_training_loop`); both come before it loads the best model back.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

from flair.trainers.plugins import TrainerPlugin


class FinalModelScores(TrainerPlugin):
    """``scores``: ``score(model)`` on the weights training ended with (None if training raised)."""

    def __init__(self, score: Callable[[object], Dict]):
        super().__init__()
        self.score = score
        self.scores: Optional[Dict] = None

    def _measure(self):
        if self.scores is None:
            self.model.eval()
            self.scores = self.score(self.model)

    @TrainerPlugin.hook
    def after_training_loop(self, **kw):
        self._measure()

    @TrainerPlugin.hook
    def training_interrupt(self, **kw):
        self._measure()
