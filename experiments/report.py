"""Build ``experiments/RESULTS.md`` and its plots from the committed result JSON files.

    python -m experiments.report

Every number in RESULTS.md is read from ``experiments/results/**.json``; nothing is typed in by hand.
"""
from __future__ import annotations

import json
import statistics
from collections import defaultdict
from typing import Dict, List

from .common import RESULTS, REPO
from .suites import SUITES

OUT = REPO / "experiments" / "RESULTS.md"
PLOTS = REPO / "experiments" / "plots"
METHOD_ORDER = ["teacher", "teacher (applied directly)", "none", "token", "posterior", "topk", "local", "structural",
                "structural, T=1", "structural, global T", "structural+unlabelled"]
METHOD_NAMES = {"teacher": "teacher", "none": "student, no KD", "token": "token-level KD", "posterior": "posterior KD",
                "topk": "Top-K KD (k=10)", "local": "structural KD, reference local-softmax arcs",
                "structural": "structural KD (exact)", "structural+unlabelled": "structural KD + unlabelled text",
                "structural, T=1": "structural KD, T=1", "structural, global T": "structural KD, global T=2"}


def load() -> Dict[str, List[dict]]:
    runs = defaultdict(list)
    for path in sorted(RESULTS.glob("*/*.json")):
        data = json.loads(path.read_text())
        runs[data["suite"]].append(data)
    return runs


def _student_kind(run: dict) -> str:
    name = run["run"]
    if run["role"] == "teacher":
        return "-"
    for prefix in ("crf", "maxent", "sl"):
        if name.startswith(prefix):
            return {"crf": "CRF", "maxent": "MaxEnt", "sl": "MaxEnt (offset tags)"}[prefix]
    return ""


def _fmt(values: List[float], scale: float = 100.0) -> str:
    if not values:
        return "-"
    mean = statistics.mean(values) * scale
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {statistics.stdev(values) * scale:.2f}"


def _group(runs: List[dict]):
    groups = defaultdict(list)
    for run in runs:
        groups[(run["role"], run["run"])].append(run)
    return groups


def _order(key_runs):
    (role, name), runs = key_runs
    method = runs[0]["method"]
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return (role != "teacher", _student_kind(runs[0]), rank, name)


PARSING_COLUMNS = [("UAS", "uas"), ("LAS", "las"), ("UAS no punct", "uas_nopunct"), ("LAS no punct", "las_nopunct")]


def _score(run: dict, key: str):
    test = run["test"]
    for candidate in (key, f"{key}/score", key.upper()):
        if candidate in test:
            return test[candidate]
    return None


def borrowed_teacher(name: str, all_runs: Dict[str, List[dict]]) -> List[dict]:
    """The teacher row of a suite that reuses another suite's teacher, so every table shows its teacher."""
    source = SUITES[name].teacher_from if name in SUITES else None
    teachers = [r for r in all_runs.get(source or "", []) if r["role"] == "teacher"]
    return [{**r, "run": f"teacher (of {source})"} for r in teachers]


def suite_table(name: str, runs: List[dict]) -> List[str]:
    suite = SUITES.get(name)
    parsing = suite is not None and suite.metric == "las"
    header = ["model", "student", "method", "case", "gold / unlabelled sentences", "seeds"]
    header += [c for c, _ in PARSING_COLUMNS] if parsing else ["test F1"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (role, run_name), group in sorted(_group(runs).items(), key=_order):
        first = group[0]
        sizes = first.get("sizes", {})
        row = [run_name, _student_kind(first), METHOD_NAMES.get(first["method"], first["method"]),
               first.get("case", "") or "-", f"{sizes.get('train', '?')} / {sizes.get('unlabelled', 0)}",
               str(len(group))]
        if parsing:
            row += [_fmt([v for v in (_score(r, key) for r in group) if v is not None]) for _, key in PARSING_COLUMNS]
        else:
            row.append(_fmt([r["test"]["main"] for r in group]))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def speed_table(all_runs: Dict[str, List[dict]]) -> List[str]:
    """One row per suite and model kind (every student of a kind has the same architecture, so their speeds
    differ only by measurement noise: the median is shown, with the range)."""
    lines = ["| suite | model | runs timed | sentences/s (CPU, 1 thread), median (range) | size on disk (MB) | "
             "load time (s) | speed-up over the teacher |", "|---|---|---|---|---|---|---|"]
    for name, runs in all_runs.items():
        kinds = defaultdict(list)
        for run in runs:
            if "sentences_per_second" in run:
                kinds["teacher" if run["role"] == "teacher" else _student_kind(run) + " student"].append(run)
        teacher = kinds.get("teacher") or [r for r in borrowed_teacher(name, all_runs) if "sentences_per_second" in r]
        teacher_speed = statistics.median(r["sentences_per_second"] for r in teacher) if teacher else None
        for kind in sorted(kinds, key=lambda k: (k != "teacher", k)):
            timed = kinds[kind]
            speeds = [r["sentences_per_second"] for r in timed]
            median = statistics.median(speeds)
            spread = f" ({min(speeds):.0f}-{max(speeds):.0f})" if len(speeds) > 1 else ""
            ratio = f"{median / teacher_speed:.1f}x" if teacher_speed and kind != "teacher" else "-"
            lines.append(f"| {name} | {kind} | {len(timed)} | {median:.1f}{spread} | "
                         f"{statistics.median(r['model_mb'] for r in timed):.1f} | "
                         f"{statistics.median(r['load_seconds'] for r in timed):.2f} | {ratio} |")
    return lines


def plots(all_runs: Dict[str, List[dict]]) -> List[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ["(matplotlib is not installed: no plots)"]
    PLOTS.mkdir(parents=True, exist_ok=True)
    made = []
    for name, runs in all_runs.items():
        groups = sorted(_group(runs).items(), key=_order)
        labels, means, errors = [], [], []
        for (role, run_name), group in groups:
            values = [100 * r["test"]["main"] for r in group]
            labels.append(run_name)
            means.append(statistics.mean(values))
            errors.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(labels)), 4))
        ax.bar(range(len(labels)), means, yerr=errors, capsize=3,
               color=["#555555" if lab == "teacher" else "#4477aa" for lab in labels])
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=45, ha="right")
        metric = "LAS" if SUITES.get(name) and SUITES[name].metric == "las" else "F1"
        ax.set_ylabel(f"test {metric} (mean ± sd over seeds)")
        low = min(means) - 5
        ax.set_ylim(max(0, low), min(100, max(means) + 5))
        ax.set_title(SUITES[name].title if name in SUITES else name, fontsize=9)
        fig.tight_layout()
        path = PLOTS / f"{name}_methods.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(f"![{name}](plots/{path.name})")
    timed = [r for runs in all_runs.values() for r in runs if "sentences_per_second" in r]
    if timed:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in timed:
            ax.scatter(r["sentences_per_second"], 100 * r["test"]["main"],
                       marker="s" if r["role"] == "teacher" else "o",
                       color="#555555" if r["role"] == "teacher" else "#4477aa")
            ax.annotate(f"{r['suite']}/{r['run']}", (r["sentences_per_second"], 100 * r["test"]["main"]), fontsize=6)
        ax.set_xscale("log")
        ax.set_xlabel("sentences per second (CPU, one thread, log scale)")
        ax.set_ylabel("test F1 / LAS")
        ax.set_title("speed and accuracy: teachers (squares) and students (circles)", fontsize=9)
        fig.tight_layout()
        fig.savefig(PLOTS / "speed_accuracy.png", dpi=110)
        plt.close(fig)
        made.append("![speed and accuracy](plots/speed_accuracy.png)")
    return made


def resources_section() -> List[str]:
    path = RESULTS / "resources.json"
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    lines = ["## Offline teacher resources", "", "Built by `python -m experiments.resources` (cached outside git).", "",
             "| language | resource | figures |", "|---|---|---|"]
    for lang, items in sorted(data.items()):
        for resource, figures in sorted(items.items()):
            shown = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
            lines.append(f"| {lang} | {resource} | {shown} |")
    return lines + [""]


def main():
    all_runs = load()
    lines = ["# Results", "",
             "Generated by `python -m experiments.report` from `experiments/results/**.json`; each JSON records the "
             "command that reproduces it (`python -m experiments.run <suite> ...`). Sizes are cut to fit a 2-core "
             "CPU (see `experiments/README.md`); test scores are micro F1 (NER) or attachment scores (parsing), "
             "mean ± standard deviation over the seeds listed.", ""]
    for name in [n for n in SUITES if n in all_runs] + [n for n in all_runs if n not in SUITES]:
        title = SUITES[name].title if name in SUITES else name
        lines += [f"## {title}", "", f"Suite `{name}`: `python -m experiments.run {name}`", ""]
        lines += suite_table(name, all_runs[name] + borrowed_teacher(name, all_runs)) + [""]
    lines += ["## Speed and size", ""] + speed_table(all_runs) + [""]
    lines += resources_section()
    made = plots(all_runs)
    if made:
        lines += ["## Plots", ""] + made + [""]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
