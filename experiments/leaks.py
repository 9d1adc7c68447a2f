"""No student reads, as unlabelled text, sentences whose gold labels trained its teacher.

A teacher's marginals on its own training sentences hand their gold labels over, so a "semi-supervised"
student distilled through them is not semi-supervised. ``python -m experiments.run`` calls
:func:`refuse_leaks` before anything trains; ``tests/test_experiment_leaks.py`` runs it over every suite.

Sentences are compared by a hash of their token sequence (the target cache's ``sentence_key``, which
``skd_flair.training.provenance`` also writes into every model it trains). Identical short sentences recur in news text ("LONDON 1996-08-30"), so a pair leaks
when more than ``LEAK_SHARE`` (10%) of the unlabelled sentences are in the teacher's gold training set; the
count is recorded either way (``leak_check`` in each student's result JSON).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from skd_flair.training.cache import sentence_key
from skd_flair.training.provenance import LEAK_SHARE


_KEYS: Dict[str, set] = {}


def split_keys(split) -> set:
    return {sentence_key(sentence) for sentence in (split or [])}


@dataclass
class Overlap:
    student: str
    teacher_suite: str
    shared: int
    unlabelled: int

    @property
    def share(self) -> float:
        return self.shared / self.unlabelled if self.unlabelled else 0.0

    @property
    def leaks(self) -> bool:
        return self.share > LEAK_SHARE

    def __str__(self) -> str:
        return (f"{self.student}: {self.shared} of {self.unlabelled} unlabelled sentences ({self.share:.1%}) are in the "
                f"gold training set of {self.teacher_suite}'s teacher")


def teacher_corpora(suite, suites: Dict) -> Dict[str, Dict]:
    """Owner suite -> the corpus spec its teacher trains on, for every teacher of the suite (its own, the one it
    borrows, each routed part's, or each of an ensemble's)."""
    owners = list((suite.routes or {}).values()) or list(suite.ensemble or []) or [suite.teacher_from or suite.name]
    return {owner: (suites[owner] if owner != suite.name else suite).corpus for owner in owners}


def overlaps(suite, suites: Dict, load: Callable) -> List[Overlap]:
    """Overlap of the teacher's training split with each student's unlabelled text (students without any are
    skipped); ``load`` builds a Flair corpus from a spec. Sentence keys are kept per spec for the process, so
    suites that share a corpus (every CoNLL-2003 suite) read it once."""

    def keys(spec: Dict) -> set:
        name = json.dumps(spec, sort_keys=True, default=str)
        if name not in _KEYS:
            _KEYS[name] = split_keys(load(spec).train)
        return _KEYS[name]

    out = []
    for student in suite.students:
        if not student.unlabelled:
            continue
        unlabelled = keys(student.unlabelled)
        for owner, spec in teacher_corpora(suite, suites).items():
            out.append(Overlap(student.name, owner, len(keys(spec) & unlabelled), len(unlabelled)))
    return out


def refuse_leaks(suite, suites: Dict, load: Callable, only: Optional[List[str]] = None) -> List[Overlap]:
    """Raise SystemExit naming every leaking student of ``suite`` (or of ``only``); return the overlaps."""
    found = [o for o in overlaps(suite, suites, load) if not only or o.student in only]
    bad = [o for o in found if o.leaks]
    if bad:
        raise SystemExit(f"label leak in suite {suite.name}, refusing to run: " + "; ".join(map(str, bad)))
    return found
