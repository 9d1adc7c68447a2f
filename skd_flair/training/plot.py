"""``skd-flair plot RUN_DIR``: a run's Flair ``loss.tsv`` (train loss, dev score) and, for distillation runs, its
``kd_loss.tsv`` (the KD diagnostics) drawn as one PNG."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, List, Optional, Union

from ..registry import ConfigError

__all__ = ["read_tsv", "plot_run"]

SCORE_PREFERENCE = ("F1", "LAS", "UAS", "ACCURACY")


def read_tsv(path: Path) -> Dict[str, List[float]]:
    """Columns of a tab-separated log with a header line, as floats (NaN where a cell is not a number; a list
    such as ``0.1,0.01`` gives its first value). A resumed run may repeat an epoch: its last row is kept."""
    lines = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        return {}
    header = lines[0].split("\t")
    rows: Dict[str, List[str]] = {}
    for line in lines[1:]:
        cells = line.split("\t")
        if cells == header:  # a header written again by a restarted run
            continue
        rows[cells[0]] = cells  # keyed by epoch: the last row of a repeated epoch wins

    def number(cell: str) -> float:
        try:
            return float(cell.split(",")[0])
        except ValueError:
            return float("nan")

    ordered = sorted(rows.values(), key=lambda cells: number(cells[0]))
    return {name: [number(cells[i]) if i < len(cells) else float("nan") for cells in ordered]
            for i, name in enumerate(header)}


def _score_columns(columns: Dict[str, List[float]]) -> List[str]:
    """The evaluation scores Flair logged (F1, LAS, UAS, accuracy of dev, test, train sample); any other score
    column when none of those is there."""
    scores = [c for c in columns if c.startswith(("DEV_", "TEST_", "TRAIN_SAMPLE_")) and not c.endswith("_LOSS")]
    main = [c for c in scores if c.rsplit("_", 1)[-1] in SCORE_PREFERENCE]
    return main or scores


def _line(ax, columns, name, label=None, **kw):
    values = columns.get(name)
    if values and not all(math.isnan(v) for v in values):
        ax.plot(columns["EPOCH"], values, marker="o", markersize=3, label=label or name.lower(), **kw)
        return True
    return False


def _mark_learning_rate(ax, columns):
    """Dotted vertical lines where the learning rate changed (Flair's annealing), labelled with the new rate."""
    rates, epochs = columns.get("LEARNING_RATE") or [], columns["EPOCH"]
    changes = [i for i in range(1, len(rates)) if rates[i] != rates[i - 1] and not math.isnan(rates[i])]
    for n, i in enumerate(changes):
        label = f"learning rate {rates[0]:g} annealed" if n == 0 else None
        ax.axvline(epochs[i], color="grey", linestyle=":", linewidth=1, label=label)
        ax.annotate(f"lr {rates[i]:g}", (epochs[i], 1), xycoords=("data", "axes fraction"), xytext=(2, -10),
                    textcoords="offset points", fontsize=7, color="grey")


def _finish(ax, title: str, ylabel: str):
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, loc="best")


def plot_run(run_dir: Union[str, Path], output: Optional[Union[str, Path]] = None) -> Dict[str, object]:
    """Draw the run in `run_dir` into `output` (default ``RUN_DIR/training.png``); returns what was drawn."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} does not exist")
    loss_file = run_dir / "loss.tsv"
    if not loss_file.is_file():
        raise ConfigError(f"{run_dir} has no loss.tsv: not a training run folder (trainer.base_path), or "
                          "trainer.create_loss_file was off")
    flair_log = read_tsv(loss_file)
    if not flair_log.get("EPOCH"):
        raise ConfigError(f"{loss_file} holds no finished epoch yet")
    kd_file = run_dir / "kd_loss.tsv"
    kd_log = read_tsv(kd_file) if kd_file.is_file() else {}
    if not kd_log.get("EPOCH"):
        kd_log = {}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ConfigError(f"plot needs matplotlib: pip install matplotlib ({error})") from None

    rows = 2 if kd_log else 1
    fig, axes = plt.subplots(rows, 2, figsize=(12, 4.2 * rows), squeeze=False)
    title = run_dir.resolve().name
    results = run_dir / "results.json"
    if results.is_file():
        try:
            saved = json.loads(results.read_text())
            if isinstance(saved.get("test_score"), (int, float)):
                title += f" - test score {saved['test_score']:.4f}"
            if saved.get("stopped_early"):
                title += f" (stopped early: {saved['stopped_early']})"
        except ValueError:
            pass
    fig.suptitle(title, fontsize=13)

    ax = axes[0][0]
    _line(ax, flair_log, "TRAIN_LOSS", "train loss")
    _line(ax, flair_log, "DEV_LOSS", "dev loss")
    _finish(ax, "Loss (Flair's loss.tsv)", "loss")

    ax = axes[0][1]
    scores = _score_columns(flair_log)
    drawn = [c for c in scores if _line(ax, flair_log, c, c.lower().replace("_", " "))]
    _mark_learning_rate(ax, flair_log)
    _finish(ax, "Dev score", "score")

    if kd_log:
        ax = axes[1][0]
        for name, label in (("GOLD_LOSS", "gold loss / token"), ("KD_LOSS", "KD loss / token"),
                            ("KL_PER_TOKEN", "KL(teacher || student) / token"),
                            ("TEACHER_ENTROPY", "teacher entropy / token")):
            _line(ax, kd_log, name, label)
        _finish(ax, "KD losses (kd_loss.tsv)", "nats per token")

        ax = axes[1][1]
        _line(ax, kd_log, "LAMBDA", "lambda (KD weight)")
        _line(ax, kd_log, "ARGMAX_AGREEMENT", "argmax agreement with teacher")
        ax.set_ylim(-0.02, 1.02)
        _finish(ax, "KD mixing and agreement", "share")
        if "GRAD_NORM_KD" in kd_log:  # probe_gradients: on their own axis, one legend drawn above both
            twin = ax.twinx()
            _line(twin, kd_log, "GRAD_NORM_KD", "grad norm, KD term (right)", color="tab:red", linestyle="--")
            _line(twin, kd_log, "GRAD_NORM_GOLD", "grad norm, gold term (right)", color="tab:purple",
                  linestyle="--")
            twin.set_ylabel("gradient norm")
            ax.get_legend().remove()
            handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
            twin.legend(handles=handles, fontsize=8, loc="best")

    fig.tight_layout()
    output = Path(output) if output is not None else run_dir / "training.png"
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return {"output": str(output), "epochs": len(flair_log["EPOCH"]), "scores": drawn,
            "kd": sorted(c for c in kd_log if c != "EPOCH")}
