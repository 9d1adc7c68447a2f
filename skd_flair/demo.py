"""The main job (``make demo``): on the bundled WikiANN English slice, train a transformer + GloVe BiLSTM-CRF
teacher, then GloVe + character BiLSTM-CRF students without KD and with structural KD, once with all 400 gold
sentences and once with 100 gold sentences. The low-resource KD student also reads the other 300 as unlabelled
text, through a teacher of the same stack trained on the 100 gold sentences only: a user with 100 labelled
sentences has no teacher that saw more, and ``distill`` refuses a teacher that trained on the unlabelled text.
Prints test F1 and prediction speed. A finished step is reused when its configuration has not changed."""
from __future__ import annotations

import json
import logging
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


def _kept(base: Path) -> Path:
    """The model a finished step kept: ``final-model.pt`` (the default keeps the last weights), or
    ``best-model.pt`` for a configuration that keeps the best dev epoch's."""
    final = base / "final-model.pt"
    return final if final.exists() else base / "best-model.pt"


def _step(name: str, file: str, kind: str, teacher: str, out: Path, fresh: bool) -> Dict:
    from .training import pipeline

    overrides = [f"trainer.base_path={out / name}"]
    if kind == "distill":
        overrides.append(f"teacher.path={_kept(out / teacher)}")
    config = pipeline.load_config(CONFIGS / file, overrides)
    done = out / name / "results.json"
    if not fresh and done.exists() and _kept(out / name).exists():
        previous = json.loads(done.read_text())
        weights = "last epoch" if pipeline.keeps_last_weights(config["trainer"]) else "best dev epoch"
        # a run from before the last weights became the default tested other weights with the same configuration
        same = previous.get("config") == json.loads(json.dumps(config, default=str))
        if same and previous.get("weights") == weights:
            log.info(f"demo: {name} already trained with this configuration, reusing {done}")
            return previous
    log.info(f"demo: training {name} ({file})")
    # the demo decides reuse itself (above): a changed step is retrained over its old folder
    return (pipeline.distill if kind == "distill" else pipeline.train_model)(config, overwrite=True)


def run_demo(out="runs/demo", fresh: bool = False) -> Dict:
    from .training.corpora import load_corpus
    from .training.models import load_model
    from .training.pipeline import load_config, measure_speed

    torch.set_num_threads(1)
    if not CONFIGS.is_dir():
        raise ConfigError(f"demo configurations not found in {CONFIGS}: run the demo from a clone of the repository")
    out = Path(out)
    start = time.time()
    results = {name: _step(name, file, kind, teacher, out, fresh) for name, file, kind, teacher in STEPS}
    test = list(load_corpus(load_config(CONFIGS / "teacher.yaml")["corpus"]).test)
    speed = {}
    for name in ("teacher", "student_kd"):
        log.info(f"demo: timing {name} on {len(test)} test sentences (1 thread, batch 32)")
        speed[name] = measure_speed(load_model(str(_kept(out / name))), test, batch_size=32)
    for name, *_ in STEPS[1:]:  # every teacher, and every student, has the same architecture
        speed.setdefault(name, speed["teacher" if name.startswith("teacher") else "student_kd"])
    summary = {"test_f1": {name: results[name]["test_score"] for name, *_ in STEPS}, "sentences_per_second": speed,
               "speedup": speed["student_kd"] / speed["teacher"], "minutes": (time.time() - start) / 60}
    lines = ["", "All models are BiLSTM-CRFs (hidden 256); students use GloVe 6B 50d + character embeddings.",
             f"{'model':30s} {'gold':>5s} {'unlab.':>6s} {'test F1':>8s} {'sent/s (CPU, 1 thread)':>24s}"]
    for label, key, gold, unlabelled in ROWS:
        lines.append(f"{label:30s} {gold:>5s} {unlabelled:>6s} {100 * summary['test_f1'][key]:8.2f} {speed[key]:24.1f}")
    lines.append(f"student speed-up over the teacher: {summary['speedup']:.1f}x; total {summary['minutes']:.1f} min")
    print("\n".join(lines))
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
