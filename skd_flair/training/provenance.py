"""Which gold sentences a model was trained on, so a student never reads them as "unlabelled" text.

A teacher's marginals on the sentences it was trained on hand their gold labels over: a student distilled
through them is not learning from unlabelled text. Every model trained through ``skd_flair`` carries, in its
Flair model card, a short hash of each labelled training sentence (``TRAINING_SENTENCES``: the target cache's
``sentence_key``, 32 hex digits); ``distill`` compares it with the unlabelled text and refuses a leak. Models
trained elsewhere carry none, and are then taken on trust (logged).
"""
from __future__ import annotations

import logging
from typing import List, Optional, Set

from flair.trainers.plugins import TrainerPlugin

from ..models.kd_student import is_unlabelled
from ..registry import ConfigError
from .cache import sentence_key

log = logging.getLogger("skd_flair")

TRAINING_SENTENCES = "skd_training_sentences"
# identical short sentences recur in news text ("LONDON 1996-08-30"): CoNLL-2003 sentences 0..2,000 and
# 2,000..4,000 share 3.6% of the latter, a teacher's own training text shares all of it
LEAK_SHARE = 0.10

__all__ = ["TRAINING_SENTENCES", "LEAK_SHARE", "labelled_keys", "ProvenancePlugin",
           "teacher_training_keys", "check_unlabelled", "cross_fit_shares"]


def labelled_keys(sentences) -> List[str]:
    """The sorted, distinct keys of the sentences that carry gold labels (unlabelled KD text is left out)."""
    return sorted({sentence_key(s) for s in (sentences or []) if not is_unlabelled(s)})


class ProvenancePlugin(TrainerPlugin):
    """Writes the keys of the model's labelled training sentences into its model card, which every model
    file the trainer saves (best, final, checkpoints) then holds."""

    def __init__(self, train_sentences):
        super().__init__()
        self.keys = labelled_keys(train_sentences)

    @TrainerPlugin.hook
    def after_setup(self, **kw):
        if self.model.model_card is not None:  # the trainer sets it just before this hook
            self.model.model_card[TRAINING_SENTENCES] = self.keys

    def get_state(self):
        return {**super().get_state(), "training_sentences": len(self.keys)}


def teacher_training_keys(model) -> Optional[Set[str]]:
    card = getattr(model, "model_card", None) or {}
    keys = card.get(TRAINING_SENTENCES)
    return None if keys is None else set(keys)


def check_unlabelled(teacher, sentences, allow_leak: bool = False) -> Optional[int]:
    """How many of the unlabelled ``sentences`` the teacher was trained on with gold labels (None: the teacher
    does not say). Raises ConfigError when that is more than ``LEAK_SHARE`` of them, unless ``allow_leak``."""
    taught = teacher_training_keys(teacher)
    if taught is None:
        log.info("the teacher carries no list of its training sentences: cannot check the unlabelled text "
                 "for label leaks")
        return None
    text = {sentence_key(s) for s in sentences}
    shared = len(text & taught)
    if text and shared > LEAK_SHARE * len(text) and not allow_leak:
        raise ConfigError(f"label leak: the teacher was trained on the gold labels of {shared} of the {len(text)} "
                          f"unlabelled sentences ({shared / len(text):.0%}); its marginals would hand them to the "
                          "student. Use text the teacher never trained on, or set kd.allow_label_leak: true")
    if shared:
        log.info(f"{shared} of {len(text)} unlabelled sentences also occur in the teacher's training data")
    return shared


def cross_fit_shares(taught: List[Optional[Set[str]]], sentences) -> List[list]:
    """The sentences each teacher annotates when cross-fitting: those it was not trained on (``taught``: each
    teacher's training-sentence keys, ``teacher_training_keys``), so a gold sentence's targets say what a teacher
    knows rather than what it memorised. A sentence every teacher trained on (a repeat such as a short dateline,
    up to ``LEAK_SHARE`` of them) is annotated by all; more than that means the teachers were not trained on
    different parts of the data: ConfigError, as for a teacher that carries no list."""
    for i, keys in enumerate(taught):
        if keys is None:
            raise ConfigError(f"teacher[{i}]: cross-fitting needs teachers that carry the list of their training "
                              "sentences (trained with skd-flair train or ProvenancePlugin); this one carries none")
    sentences = list(sentences)
    keys = [sentence_key(s) for s in sentences]
    everyone = set.intersection(*map(set, taught)) if taught else set()
    untaught = sum(key in everyone for key in keys)
    if untaught > LEAK_SHARE * len(keys):
        raise ConfigError(f"kd.cross_fit: {untaught} of the {len(keys)} training sentences were in every teacher's "
                          "training data; train the teachers on different parts of the gold data (corpus.leave_out_fold: "
                          "{folds: K, fold: i} for teacher i)")
    if untaught:
        log.info(f"cross-fitting: {untaught} of {len(keys)} training sentences were in every teacher's training data "
                 "(repeats); every teacher annotates those")
    return [[s for s, key in zip(sentences, keys) if key not in own or key in everyone] for own in taught]
