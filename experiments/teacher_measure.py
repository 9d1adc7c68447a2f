"""The skeleton shared by measurements of a suite's trained teacher (teacher_confidence, arc_marginals): load the
finished teacher, measure split by split with progress in the log, write one JSON beside the suite's results."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Callable, Dict, Tuple

from .common import suites_to_run, write_json
from .run import MODEL_CLASSES, _best, _trained
from .suites import SUITES

log = logging.getLogger("skd_flair.experiments")


def finished_teacher(suite, runs: Path) -> Tuple[str, Path, object]:
    """(owner suite, model file, the teacher in eval mode); exits with the command to train it if it is not done."""
    owner = suite.teacher_from or suite.name
    base = runs / owner / "teacher"
    model_file = _best(base)
    if not _trained(base):
        raise SystemExit(f"no finished teacher for {owner} at {model_file}: python -m experiments.run {owner} "
                         f"--teacher-only")
    teacher = MODEL_CLASSES[suite.teacher_type].load(str(model_file))
    teacher.eval()
    return owner, model_file, teacher


def measure_splits(out: Dict, splits: Dict[str, Callable[[], Dict]], path: Path) -> Dict:
    """Fill ``out[split]`` with each measurement, log it as it finishes, then write ``out`` to ``path``."""
    for split, measure in splits.items():
        out[split] = measure()
        log.info(f"[{out['suite']}] {split}: {out[split]}")
    write_json(path, out)
    return out


def cli(doc: str, measure: Callable, argv=None, **options):
    """``python -m experiments.<module> SUITE [SUITE ...]`` plus integer ``options`` (name -> help)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="+")
    for name, help_text in options.items():
        parser.add_argument(f"--{name}", type=int, default=None, help=help_text)
    args = parser.parse_args(argv)
    for suite in suites_to_run(args.suites, SUITES):
        measure(suite.name, **{name: getattr(args, name) for name in options})
