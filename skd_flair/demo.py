"""The main job (``make demo``): on the bundled WikiANN English slice, train a transformer + GloVe BiLSTM-CRF
teacher, then a GloVe + character BiLSTM-CRF student without KD and with structural KD, and print F1 and
prediction speed of each. A finished step is reused when its configuration has not changed."""
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
STEPS = (("teacher", "teacher.yaml", "train"), ("student_nokd", "student_nokd.yaml", "train"),
         ("student_kd", "student_kd.yaml", "distill"))


def _best(base: Path) -> Path:
    best = base / "best-model.pt"
    return best if best.exists() else base / "final-model.pt"


def _step(name: str, file: str, kind: str, out: Path, fresh: bool) -> Dict:
    from .training import pipeline

    overrides = [f"trainer.base_path={out / name}"]
    if kind == "distill":
        overrides.append(f"teacher.path={_best(out / 'teacher')}")
    config = pipeline.load_config(CONFIGS / file, overrides)
    done = out / name / "results.json"
    if not fresh and done.exists() and _best(out / name).exists():
        previous = json.loads(done.read_text())
        if previous.get("config") == json.loads(json.dumps(config, default=str)):
            log.info(f"demo: {name} already trained with this configuration, reusing {done}")
            return previous
    log.info(f"demo: training {name} ({file})")
    return (pipeline.distill if kind == "distill" else pipeline.train_model)(config)


def run_demo(out="runs/demo", fresh: bool = False) -> Dict:
    from .training.corpora import load_corpus
    from .training.models import load_model
    from .training.pipeline import load_config, measure_speed

    torch.set_num_threads(1)
    if not CONFIGS.is_dir():
        raise ConfigError(f"demo configurations not found in {CONFIGS}: run the demo from a clone of the repository")
    out = Path(out)
    start = time.time()
    results = {name: _step(name, file, kind, out, fresh) for name, file, kind in STEPS}
    test = list(load_corpus(load_config(CONFIGS / "teacher.yaml")["corpus"]).test)
    speed = {}
    for name in ("teacher", "student_kd"):
        log.info(f"demo: timing {name} on {len(test)} test sentences (1 thread, batch 32)")
        speed[name] = measure_speed(load_model(str(_best(out / name))), test, batch_size=32)
    speed["student_nokd"] = speed["student_kd"]  # the same architecture
    rows = [("teacher (MiniLM-L6 + GloVe, BiLSTM-CRF)", "teacher"), ("student, no KD (GloVe + char)", "student_nokd"),
            ("student, structural KD (GloVe + char)", "student_kd")]
    summary = {"test_f1": {k: results[k]["test_score"] for _, k in rows}, "sentences_per_second": speed,
               "speedup": speed["student_kd"] / speed["teacher"], "minutes": (time.time() - start) / 60}
    lines = ["", f"{'model':44s} {'test F1':>8s} {'sent/s (CPU, 1 thread)':>24s}"]
    for label, key in rows:
        lines.append(f"{label:44s} {100 * summary['test_f1'][key]:8.2f} {speed[key]:24.1f}")
    lines.append(f"student speed-up over the teacher: {summary['speedup']:.1f}x; total {summary['minutes']:.1f} min")
    print("\n".join(lines))
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
