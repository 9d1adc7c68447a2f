"""The main job (``make demo``): on the bundled WikiANN English slice, train a transformer + GloVe BiLSTM-CRF
teacher, then GloVe + character BiLSTM-CRF students without KD and with structural KD, once with all 400 gold
sentences and once with 100 gold sentences. The low-resource KD student also reads the other 300 as unlabelled
text, through a teacher of the same stack trained on the 100 gold sentences only: a user with 100 labelled
sentences has no teacher that saw more, and ``distill`` refuses a teacher that trained on the unlabelled text.
Every student trains with three seeds (under a minute each; on 100 test sentences one seed's F1 moves by a point or
two with the seed or the epoch kept); the teachers once. Prints test F1 (the students' mean and standard deviation)
and prediction speed. A finished step is reused when its configuration has not changed."""
from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Dict

import torch

from .registry import ConfigError

log = logging.getLogger("skd_flair")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "resources" / "configs" / "demo"
# (step, config file, command, the teacher a distill step reads)
STEPS = (("teacher", "teacher.yaml", "train", None), ("student_nokd", "student_nokd.yaml", "train", None),
         ("student_kd", "student_kd.yaml", "distill", "teacher"),
         ("teacher_low", "teacher_low.yaml", "train", None),
         ("student_nokd_low", "student_nokd_low.yaml", "train", None),
         ("student_kd_low", "student_kd_low.yaml", "distill", "teacher_low"))
ROWS = (("teacher (MiniLM-L6 + GloVe)", "teacher", "400", "-"), ("student, no KD", "student_nokd", "400", "-"),
        ("student, structural KD", "student_kd", "400", "-"),
        ("teacher (MiniLM-L6 + GloVe)", "teacher_low", "100", "-"),
        ("student, no KD", "student_nokd_low", "100", "-"),
        ("student, structural KD", "student_kd_low", "100", "300"))


STUDENT_SEEDS = (1, 2, 3)


def _folder(name: str, seed: int) -> str:
    return name if name.startswith("teacher") else f"{name}-seed{seed}"


def _step(name: str, file: str, kind: str, teacher: str, out: Path, fresh: bool, seed: int = 1) -> Dict:
    from .training import pipeline
    from .training.models import kept_model

    folder = _folder(name, seed)
    overrides = [f"trainer.base_path={out / folder}", f"seed={seed}"]
    if kind == "distill":
        overrides.append(f"teacher.path={kept_model(out / teacher)}")
    config = pipeline.load_config(CONFIGS / file, overrides)
    done = out / folder / "results.json"
    if not fresh and done.exists() and kept_model(out / folder) is not None:
        previous = json.loads(done.read_text())
        weights = "last epoch" if pipeline.keeps_last_weights(config["trainer"]) else "best dev epoch"
        # a run from before the last weights became the default tested other weights with the same configuration
        same = previous.get("config") == json.loads(json.dumps(config, default=str))
        if same and previous.get("weights") == weights:
            log.info(f"demo: {folder} already trained with this configuration, reusing {done}")
            return previous
    log.info(f"demo: training {folder} ({file})")
    # the demo decides reuse itself (above): a changed step is retrained over its old folder
    return (pipeline.distill if kind == "distill" else pipeline.train_model)(config, overwrite=True)


def run_demo(out="runs/demo", fresh: bool = False) -> Dict:
    from .training import atomic_path
    from .training.corpora import load_corpus
    from .training.models import load_model
    from .training.pipeline import load_config, measure_speed

    torch.set_num_threads(1)
    if not CONFIGS.is_dir():
        raise ConfigError(f"demo configurations not found in {CONFIGS}: run the demo from a clone of the repository")
    out = Path(out)
    start = time.time()
    scores = {}
    for name, file, kind, teacher in STEPS:
        seeds = (1,) if name.startswith("teacher") else STUDENT_SEEDS
        scores[name] = [_step(name, file, kind, teacher, out, fresh, seed)["test_score"] for seed in seeds]
    test = list(load_corpus(load_config(CONFIGS / "teacher.yaml")["corpus"]).test)
    speed = {}
    for name in ("teacher", "student_kd"):
        log.info(f"demo: timing {name} on {len(test)} test sentences (1 thread, batch 32)")
        speed[name] = measure_speed(load_model(str(out / _folder(name, 1))), test, batch_size=32)  # its kept model
    for name, *_ in STEPS[1:]:  # every teacher, and every student, has the same architecture
        speed.setdefault(name, speed["teacher" if name.startswith("teacher") else "student_kd"])
    summary = {"test_f1": {name: statistics.mean(values) for name, values in scores.items()},
               "test_f1_by_seed": scores, "sentences_per_second": speed,
               "speedup": speed["student_kd"] / speed["teacher"], "minutes": (time.time() - start) / 60}
    lines = ["", "All models are BiLSTM-CRFs (hidden 256); students use GloVe 6B 50d + character embeddings.",
             f"Test F1: teachers one seed; students the mean ± sd of seeds {', '.join(map(str, STUDENT_SEEDS))}.",
             f"{'model':30s} {'gold':>5s} {'unlab.':>6s} {'test F1':>13s} {'sent/s (CPU, 1 thread)':>24s}"]
    for label, key, gold, unlabelled in ROWS:
        values = [100 * v for v in scores[key]]
        f1 = f"{statistics.mean(values):.2f}" + (f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else "")
        lines.append(f"{label:30s} {gold:>5s} {unlabelled:>6s} {f1:>13s} {speed[key]:24.1f}")
    lines.append(f"student speed-up over the teacher: {summary['speedup']:.1f}x; total {summary['minutes']:.1f} min")
    print("\n".join(lines))
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return summary
