"""Build ``experiments/RESULTS.md`` and its plots from the committed result JSON files.

    python -m experiments.report

Every number in RESULTS.md is read from ``experiments/results/**.json``; nothing is typed in by hand.
"""
from __future__ import annotations

import json
import statistics
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

from .common import RESULTS, REPO
from .suites import CURVE_U, SUITES

OUT = REPO / "experiments" / "RESULTS.md"
PLOTS = REPO / "experiments" / "plots"
METHOD_ORDER = ["teacher", "teacher (applied directly)", "none", "token", "posterior", "topk", "local", "structural",
                "structural, T=1", "structural, global T", "structural+unlabelled"]
METHOD_NAMES = {"teacher": "teacher", "none": "student, no KD", "token": "token-level KD", "posterior": "posterior KD",
                "topk": "Top-K KD (k=10)", "local": "structural KD, reference local-softmax arcs",
                "structural": "structural KD (exact)", "structural+unlabelled": "structural KD + unlabelled text",
                "structural, T=1": "structural KD, T=1", "structural, global T": "structural KD, global T=2"}


# a best dev epoch before this share of the epochs run counts as early (the "stopped improving" symptom)
EARLY_BEST = 0.6
EARLIER_TEACHER = " (earlier teacher)"
EARLIER_TRAINING = "teacher, earlier training"


def load() -> Dict[str, List[dict]]:
    runs = defaultdict(list)
    for path in sorted(RESULTS.glob("*/*.json")):
        data = json.loads(path.read_text())
        if "role" in data:  # measurements of a suite (teacher_confidence.json) are not runs
            runs[data["suite"]].append(data)
    return separate_teacher_trainings(runs)


def separate_teacher_trainings(runs: Dict[str, List[dict]]) -> Dict[str, List[dict]]:
    """A lost teacher retrained is another teacher: KD students whose targets an earlier training made become rows
    of their own (``run (earlier teacher)``), beside the earlier training's teacher row, so that no mean mixes
    seeds of two teachers and no student is read against a teacher it never had. A teacher retrained more than once
    keeps every training it replaced (``previous_training`` nested, newest first): the k-th earlier one (k > 1) and
    its students are numbered (``teacher, earlier training 2``, ``run (earlier teacher 2)``). Every KD student
    gets ``teacher_trainings``: per teacher suite, which training taught it (0: the current one)."""
    teachers = {name: r for name, group in runs.items() for r in group
                if r["role"] == "teacher" and r["run"] == "teacher"}
    for name, group in runs.items():
        for k, previous in enumerate(earlier_trainings(teachers.get(name) or {}), 1):
            group.append({"suite": name, "run": EARLIER_TRAINING + _nth(k), "role": "teacher", "method": "teacher",
                          "seed": teachers[name].get("seed"), "test": previous["test"],
                          "sizes": teachers[name].get("sizes", {}), "earlier_teacher": True,
                          "teacher_trainings": {name: k}})
        for r in group:
            if r["role"] == "student" and r.get("kd"):
                r["teacher_trainings"] = _trainings_of(r, name, teachers)
                k = max(r["teacher_trainings"].values(), default=0)
                if k:
                    r.update(run=_earlier_run(r["run"], k), earlier_teacher=True)
    return runs


def _nth(k: int) -> str:
    return "" if k == 1 else f" {k}"


def _earlier_run(run: str, k: int) -> str:
    """The row name of a student run taught by the k-th earlier training of its teacher."""
    return run + EARLIER_TEACHER[:-1] + _nth(k) + ")"


def earlier_trainings(teacher: dict) -> List[dict]:
    """The trainings a teacher record replaced, newest first."""
    chain, previous = [], teacher.get("previous_training")
    while previous:
        chain.append(previous)
        previous = previous.get("previous_training")
    return chain


def _trainings_of(run: dict, name: str, teachers: Dict[str, dict]) -> Dict[str, int]:
    """Per teacher suite of ``run`` (a KD student of suite ``name``): 0 if its current training made the student's
    targets, else k, the k-th earlier training."""
    recorded = run.get("teacher_fingerprints")
    if recorded is not None:
        out = {}
        for owner, fingerprint in recorded.items():
            current = teachers.get(owner, {})
            if current.get("fingerprint") in (None, fingerprint) or \
                    fingerprint in current.get("same_training_fingerprints", []):
                out[owner] = 0
                continue
            chain = earlier_trainings(current)
            # a fingerprint no earlier training names is still not the current teacher's: the newest earlier one
            out[owner] = next((k for k, t in enumerate(chain, 1) if t.get("fingerprint") == fingerprint), 1)
        return out
    # made before records named their teacher's weights: once a retrained teacher has a fingerprint, every student
    # of it names it; the two retrainings before fingerprints (ner_nl, ner_de, 2026-12-02) were made for other
    # suites, and their own suite's students came from the earlier training (their records' notes say so)
    suite = SUITES.get(name)
    owners = (list((suite.routes or {}).values()) or list(suite.ensemble or []) or [suite.teacher_from or name]
              if suite is not None else [name])
    out = {}
    for owner in owners:
        current = teachers.get(owner, {})
        out[owner] = 0
        # (a teacher reproduced to the last digit of its record, `reproduced`, is the training they had)
        if (current.get("fingerprint") and not current.get("reproduced")) or \
                (owner == name and current.get("previous_training")):
            chain = earlier_trainings(current)
            # the owner suite's own rows: the training whose note says it made them; a borrowing suite's: the
            # newest training from before fingerprints
            noted = next((k for k, t in enumerate(chain, 1) if t.get("note")), None) if owner == name else None
            out[owner] = noted or next((k for k, t in enumerate(chain, 1) if not t.get("fingerprint")),
                                       max(len(chain), 1))
    return out


def _student_kind(run: dict) -> str:
    name = run["run"]
    if run["role"] == "teacher":
        return "-"
    model = (run.get("config") or {}).get("model") or {}
    if model.get("type") == "tagger" and "use_crf" in model:  # runs named for what they test, not their kind
        kind = "CRF" if model["use_crf"] else "MaxEnt"
        hidden = model.get("hidden_size", 256)
        return kind if hidden == 256 else f"{kind} (BiLSTM {hidden})"
    if model.get("type") == "dependency_tagger" and model.get("factorised"):
        layers, hidden = model.get("rnn_layers", 2), model.get("hidden_size", 800)
        factors = "offset x relation"
        if model.get("head_relations"):
            factors = "offset, relation given head" + (", head-aware offsets" if model.get("head_offsets") else "")
        return f"MaxEnt ({factors}, BiLSTM {layers} x {hidden})"
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


# suites whose students repeat another suite's architectures and were timed while the machine was shared
# (their speeds say nothing new): left out of the speed table and plot
UNTIMED = {name for name in SUITES if name.startswith(("recipe_", "converge_", "curve_", "onehot_"))}

PARSING_COLUMNS = [("UAS", "uas"), ("LAS", "las"), ("UAS no punct", "uas_nopunct"), ("LAS no punct", "las_nopunct")]


def _score(run: dict, key: str):
    test = run["test"]
    for candidate in (key, f"{key}/score", key.upper()):
        if candidate in test:
            return test[candidate]
    return None


def borrowed_teacher(name: str, all_runs: Dict[str, List[dict]]) -> List[dict]:
    """The teacher row of a suite that reuses another suite's teacher, so every table shows its teacher."""
    suite = SUITES.get(name)
    sources = (list((suite.routes or {}).values()) or list(suite.ensemble or []) or [suite.teacher_from]
               if suite is not None else [])
    # an earlier training's row only where a student of it is read against it here
    taught = {(owner, k) for r in all_runs.get(name, []) for owner, k in (r.get("teacher_trainings") or {}).items()}
    return [{**r, "run": f"{r['run']} (of {source})"} for source in sources if source
            for r in all_runs.get(source, []) if r["role"] == "teacher"
            and (not r.get("earlier_teacher") or (source, r["teacher_trainings"][source]) in taught)]


def suite_table(name: str, runs: List[dict]) -> List[str]:
    suite = SUITES.get(name)
    parsing = suite is not None and suite.metric == "las"
    header = ["model", "student", "method", "case", "gold / unlabelled sentences", "seeds"]
    # LAS / UAS: how often the relation is right where the head is; epochs: best dev epoch / epochs run, per seed
    header += [c for c, _ in PARSING_COLUMNS] + ["LAS / UAS", "epochs"] if parsing else ["test F1"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (role, run_name), group in sorted(_group(runs).items(), key=_order):
        first = group[0]
        sizes = first.get("sizes", {})
        row = [run_name, _student_kind(first), METHOD_NAMES.get(first["method"], first["method"]),
               first.get("case", "") or "-", f"{sizes.get('train', '?')} / {sizes.get('unlabelled', 0)}",
               str(len(group))]
        if parsing:
            row += [_fmt([v for v in (_score(r, key) for r in group) if v is not None]) for _, key in PARSING_COLUMNS]
            row.append(_fmt([r["test"]["las"] / r["test"]["uas"] for r in group if r["test"].get("uas")]))
            row.append(", ".join(f"{r['best_dev_epoch']}/{r['epochs']}" for r in group
                                 if r.get("best_dev_epoch") is not None and r.get("epochs")) or "-")
        else:
            row.append(_fmt([r["test"]["main"] for r in group]))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _ratio(history: List[dict], row: int):
    entry = history[row] if history and -len(history) <= row < len(history) else {}
    kd, gold = entry.get("GRAD_NORM_KD"), entry.get("GRAD_NORM_GOLD")
    return kd / gold if kd is not None and gold else None


def recipe_table(runs: List[dict]) -> List[str]:
    """What the KD-recipe suites are for: besides test F1, when each student stopped improving on dev (best dev
    epoch of the epochs run, per seed), what the weights training ended with score on test (Flair tests the best
    dev epoch's), and how the KD term's gradient compares with the gold term's (norm ratio on one fixed batch at
    the first and the last epoch, seed means)."""
    lines = ["| student | method | seeds | test F1 | test F1, last epoch's weights (seeds) | dev F1 | "
             "best dev epoch / epochs run (per seed) | grad norm KD / gold, first -> last epoch |",
             "|---|---|---|---|---|---|---|---|"]
    for (role, run_name), group in sorted(_group(runs).items(), key=_order):
        if role != "student":
            continue
        dev = [max(r["dev_score_history"]) for r in group if r.get("dev_score_history")]
        stops = ", ".join(f"{r.get('best_dev_epoch', '?')}/{r.get('epochs', '?')}" for r in group)
        history = [(r.get("kd") or {}).get("history") or [] for r in group]
        first = [v for v in (_ratio(h, 0) for h in history) if v is not None]
        last = [v for v in (_ratio(h, -1) for h in history) if v is not None]
        ratio = f"{statistics.mean(first):.2f} -> {statistics.mean(last):.2f}" if first and last else "-"
        final = [r["test_final"]["main"] for r in group if r.get("test_final")]  # recorded since 2026-12-04
        lines.append(f"| {run_name} | {METHOD_NAMES.get(group[0]['method'], group[0]['method'])} | {len(group)} | "
                     f"{_fmt([r['test']['main'] for r in group])} | "
                     f"{_fmt(final) + f' ({len(final)})' if final else '-'} | {_fmt(dev)} | {stops} | {ratio} |")
    return lines


def selection_table(all_runs: Dict[str, List[dict]]) -> List[str]:
    """Which weights to keep: for every student run that scored both (``test_final``, recorded since
    2026-12-04), test F1 of the best dev epoch's weights (what Flair keeps and tests) against the weights training
    ended with, paired per run, and how the difference falls across runs."""
    pairs = [(name, r) for name, group in all_runs.items() for r in group
             if r.get("role") == "student" and r.get("test_final")]
    if not pairs:
        return []
    lines = ["## Best dev epoch or last weights", "",
             "Test F1 of the two models one training gives: the best dev epoch's weights (every table above) and the "
             "weights it ended with (in suites trained to convergence, once annealing took the learning rate below its "
             "floor), paired per run. Since 2026-12-05 `skd-flair train` and `distill` keep the last weights by "
             "default; the experiment runner keeps the best dev epoch's, so that every \"test\" above is the same kind "
             "of number.", "",
             "| suite | student | seed | best dev epoch / epochs run | test F1, best dev epoch | "
             "test F1, last weights | last - best |", "|---|---|---|---|---|---|---|"]
    diffs, early = [], []
    for name, r in sorted(pairs, key=lambda p: (p[0], p[1]["run"], p[1].get("seed", 0))):
        best, last = 100 * r["test"]["main"], 100 * r["test_final"]["main"]
        diffs.append(last - best)
        early.append(bool(r.get("best_dev_epoch") and r.get("epochs"))
                     and r["best_dev_epoch"] < EARLY_BEST * r["epochs"])
        lines.append(f"| {name} | {r['run']} | {r.get('seed', '?')} | {r.get('best_dev_epoch', '?')}/"
                     f"{r.get('epochs', '?')} | {best:.2f} | {last:.2f} | {last - best:+.2f} |")
    ahead, behind = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    spread = f" (sd {statistics.stdev(diffs):.2f})" if len(diffs) > 1 else ""
    lines += ["", f"{len(diffs)} runs: the last weights score higher in {ahead}, lower in {behind}; mean difference "
                  f"{statistics.mean(diffs):+.2f} F1{spread}."]
    for label, group in ((f"before {EARLY_BEST:.0%} of the epochs run", [d for d, e in zip(diffs, early) if e]),
                         ("later", [d for d, e in zip(diffs, early) if not e])):
        if group:
            lines.append(f"Best dev epoch {label}: {len(group)} runs, the last weights higher in "
                         f"{sum(d > 0 for d in group)}, mean difference {statistics.mean(group):+.2f} F1.")
    return lines + [""]


# The English gold-data-only students by seed: plain training, KD on one-hot targets (the gold labels; the teacher's
# best path) and KD on the teacher's marginals, on the same data and trainer (suites curve_en and onehot_en)
PAIRED = (("curve_en", "crf_none", "no KD"), ("onehot_en", "u0_crf_gold", "KD on the gold labels"),
          ("onehot_en", "u0_crf_teacher_path", "KD on the teacher's best path"),
          ("curve_en", "u0_crf_structural", "KD on the teacher's marginals"),
          # each half's targets from a teacher trained on the other half only (crossfit_en)
          ("crossfit_en", "u0_crf_structural", "KD on cross-fitted teachers' marginals"))


# The stalling-students issue's capacity suspect in Dutch: the same data, teacher, trainer and seeds, other word
# tables for the student (curve_nl: 100-d fastText trained here; vectors_nl: 300-d on the same text; pieces_nl: the
# teacher transformer's input piece table added; glove_nl: the English GloVe table added)
_PIECE_METHODS = (("crf_none", "no KD"), ("crf_structural", "structural KD"), ("crf_posterior", "posterior KD"),
                  ("crf_topk", "Top-K KD"))


def _inputs_rows(curve: str, inputs: str, suite: str) -> tuple:
    """The curve's U=0 pair on its own inputs, then the piece-table suite's students."""
    return ((curve, "crf_none", f"no KD, {inputs}"), (curve, "u0_crf_structural", f"structural KD, {inputs}"),
            *((suite, run, f"{label}, + e5 piece table") for run, label in _PIECE_METHODS))


def _inputs_head(language: str, corpus: str, teacher: str = "") -> tuple:
    return (f"## {language} student inputs, by seed: what a larger word table buys, with and without KD",
            f"{corpus}, 2,000 gold sentences, the same teacher{teacher}, trainer and seeds, trained to convergence: "
            "test F1 (best dev F1 in brackets) per seed; the last rows compare each student with the first over the "
            "seeds both have.")


INPUTS_NL = (*_inputs_rows("curve_nl", "100-d fastText + chars", "pieces_nl"),
             ("vectors_nl", "crf_none_300d", "no KD, 300-d fastText + chars"),
             ("vectors_nl", "crf_structural_300d", "structural KD, 300-d fastText + chars"),
             ("glove_nl", "crf_none", "no KD, + GloVe"),
             ("glove_nl", "crf_structural", "structural KD, + GloVe"))
INPUTS_NL_HEAD = _inputs_head("Dutch", "CoNLL-02 Dutch", " (its current training; KD rows of an earlier one are left "
                                                         "out)")

# The same question in English (curve_en: GloVe + chars; pieces_en: the e5 piece table added)
INPUTS_EN = _inputs_rows("curve_en", "GloVe + chars", "pieces_en")
INPUTS_EN_HEAD = _inputs_head("English", "CoNLL-03 English")


# With unlabelled text: the teacher on every sentence (KD and gold 0.5 each on the gold ones) against the teacher on
# the unlabelled text only (gold sentences learn from gold alone), beside plain training
TEXT_ONLY_U = 2000
TEXT_ONLY = (("curve_en", "crf_none", "no KD"),
             ("curve_en", f"u{TEXT_ONLY_U}_crf_structural", "structural KD, every sentence"),
             ("curve_en", f"u{TEXT_ONLY_U}_crf_structural_kd_on_text", "structural KD, unlabelled text only"),
             ("curve_en", f"u{TEXT_ONLY_U}_crf_posterior", "posterior KD, every sentence"),
             ("curve_en", f"u{TEXT_ONLY_U}_crf_posterior_kd_on_text", "posterior KD, unlabelled text only"))
TEXT_ONLY_HEAD = ("## The teacher on every sentence or on unlabelled text only",
                  f"CoNLL-03 English, 2,000 gold sentences + {TEXT_ONLY_U:,} unlabelled, trained to convergence: test "
                  "F1 (best dev F1 in brackets) per seed. \"every sentence\": the gold sentences learn from KD and gold "
                  "0.5 each, the unlabelled ones from the teacher; \"unlabelled text only\": the gold sentences learn "
                  "from their gold labels alone (`kd.mix: {type: constant, weight: 0}`). The last rows compare each "
                  "student with the first over the seeds both have.")


# The stalling-students issue's goal, all gold data, the default recipe, trained to convergence: per language, plain
# training against every KD method, and structural KD against each of the others over the seeds both have
GOAL = (("CoNLL-03 en", "curve_en", "u0_"), ("CoNLL-02 nl", "curve_nl", "u0_"), ("WikiANN de", "converge_de", ""),
        # the same methods on students that also read the teacher transformer's input piece table
        ("CoNLL-03 en, + piece table", "pieces_en", ""), ("CoNLL-02 nl, + piece table", "pieces_nl", ""),
        ("WikiANN de, + piece table", "pieces_de", ""))
GOAL_METHODS = (("crf_structural", "structural"), ("crf_posterior", "posterior"), ("crf_topk", "Top-K"),
                ("maxent_structural", "MaxEnt structural"), ("maxent_token", "MaxEnt token-level"))


def goal_table(all_runs: Dict[str, List[dict]], key: str = "test") -> List[str]:
    """Test F1 (``key``: ``test``, the best dev epoch's weights, or ``test_final``, the last weights) of plain
    training and every KD method per language (a row per teacher training: the current one's students, then each
    earlier one's), and structural KD minus each other row over the seeds both have: mean difference, on how many
    seeds structural KD is lower."""
    header = ["language (suite)", "no KD"] + [label for _, label in GOAL_METHODS] + [
        f"structural - {label}" for label in ["no KD"] + [label for _, label in GOAL_METHODS[1:]]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for language, suite, prefix, training in _goal_rows(all_runs):
        def per_seed(run, kd=True):
            return _per_seed(all_runs, suite, run, key, training if kd else 0)
        rows = {"none": per_seed("crf_none", kd=False),
                **{name: per_seed(prefix + name) for name, _ in GOAL_METHODS}}
        if not rows["crf_structural"]:
            continue
        teacher = f"; earlier training{_nth(training)} of its teacher" if training else ""
        cells = [f"{language} (`{suite}`{teacher})"] + [
            _fmt(list(rows[name].values())) + (f" ({len(rows[name])})" if rows[name] else "")
            for name in ["none"] + [n for n, _ in GOAL_METHODS]]
        cells += [_paired_difference(rows["crf_structural"], rows[other])
                  for other in ["none"] + [n for n, _ in GOAL_METHODS[1:]]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []


def _goal_rows(all_runs: Dict[str, List[dict]]):
    """(language, suite, prefix, training) per goal row: the current teacher's students of every GOAL suite, then
    those of each earlier training of its teacher that taught a structural-KD student (a teacher retrained after its
    students ran: their rows stay readable, against plain training, which no teacher touches)."""
    for language, suite, prefix in GOAL:
        yield language, suite, prefix, 0
        trainings = {k for r in all_runs.get(suite, []) if r.get("earlier_teacher") and r.get("role") == "student"
                     for k in [max(r["teacher_trainings"].values())]
                     if r["run"] == _earlier_run(prefix + "crf_structural", k)}
        yield from ((language, suite, prefix, k) for k in sorted(trainings))


def _per_seed(all_runs: Dict[str, List[dict]], suite: str, run: str, key: str = "test",
              training: int = 0) -> Dict[int, float]:
    """{seed: score} of one student row: the current teacher's students, or with ``training`` k > 0 those of the
    k-th earlier training of their teacher."""
    if training:
        run = _earlier_run(run, training)
    return {r["seed"]: r[key]["main"] for r in all_runs.get(suite, []) if r.get("role") == "student"
            and r.get("run") == run and bool(r.get("earlier_teacher")) == bool(training) and r.get(key)}


def _paired_difference(a: Dict[int, float], b: Dict[int, float]) -> str:
    """a minus b over the seeds both have, in F1 points: mean (seeds; on how many a is lower)."""
    diffs = [100 * (a[seed] - b[seed]) for seed in sorted(set(a) & set(b))]
    return f"{statistics.mean(diffs):+.2f} ({len(diffs)}; lower on {sum(d < 0 for d in diffs)})" if diffs else "-"


# all gold data: the curve's plain and structural-KD students against the cross-fitted ones (each half of the gold
# sentences taught by a teacher trained on the other half)
CROSSFIT = (("CoNLL-03 en", "curve_en", "crossfit_en"), ("CoNLL-02 nl", "curve_nl", "crossfit_nl"))


def crossfit_table(all_runs: Dict[str, List[dict]]) -> List[str]:
    """Per language and kept weights: the teachers (all gold; the two halves'), plain training, structural KD and
    cross-fitted structural KD (mean ± sd, seeds), and the cross-fitted student minus each over paired seeds."""
    header = ["language", "weights", "teacher (2,000) / fold teachers", "no KD", "structural KD",
              "structural KD, cross-fitted", "cross-fitted - no KD", "cross-fitted - structural KD"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for language, curve, crossed in CROSSFIT:
        teachers = [_current_teacher_score(all_runs, owner)
                    for owner in [SUITES[curve].teacher_from, *sorted(SUITES[crossed].routes.values())]]
        for key, weights in (("test", "best dev epoch"), ("test_final", "last")):
            plain, structural = (_per_seed(all_runs, curve, run, key) for run in ("crf_none", "u0_crf_structural"))
            crossfit = _per_seed(all_runs, crossed, "u0_crf_structural", key)
            if not crossfit:
                continue
            cells = [language, weights, " / ".join("-" if t is None else f"{100 * t:.2f}" for t in teachers)]
            cells += [_fmt(list(rows.values())) + f" ({len(rows)})" if rows else "-"
                      for rows in (plain, structural, crossfit)]
            cells += [_paired_difference(crossfit, plain), _paired_difference(crossfit, structural)]
            lines.append("| " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else []


def _current_teacher_score(all_runs: Dict[str, List[dict]], owner: str):
    return next((r["test"]["main"] for r in all_runs.get(owner, []) if r.get("role") == "teacher"
                 and not r.get("earlier_teacher")), None)


def paired_seeds_table(all_runs: Dict[str, List[dict]], paired=PAIRED, head=None) -> List[str]:
    """Test F1 (best dev F1) of each student per seed, and per student against the first one over the seeds both
    have: mean difference and on how many seeds it is lower, on test and on dev."""
    found = {(suite, run): {r["seed"]: r for r in all_runs.get(suite, [])
                            if r.get("run") == run and r.get("role") == "student"} for suite, run, _ in paired}
    columns = [((suite, run), label) for suite, run, label in paired if found[(suite, run)]]
    if len(columns) < 2:
        return []
    seeds = sorted({seed for key, _ in columns for seed in found[key]})
    title, intro = head or ("## Gold data only, by seed: where KD's cost comes from",
                            "CoNLL-03 English, 2,000 gold sentences, trained to convergence: test F1 (best dev F1 in "
                            "brackets) per seed; the last rows compare each student with the first over the seeds both "
                            "have.")
    lines = [title, "", intro, "",
             "| seed | " + " | ".join(f"{label} (`{suite}` `{run}`)" for (suite, run), label in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for seed in seeds:
        cells = []
        for key, _ in columns:
            r = found[key].get(seed)
            cells.append(f"{100 * r['test']['main']:.2f} ({100 * max(r['dev_score_history']):.2f})"
                         if r and r.get("dev_score_history") else "-")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    base = found[columns[0][0]]
    for what, value in (("test", lambda r: 100 * r["test"]["main"]),
                        ("best dev", lambda r: 100 * max(r["dev_score_history"]))):
        cells = ["-"]
        for key, _ in columns[1:]:
            common = [seed for seed in found[key] if seed in base]
            diffs = [value(found[key][seed]) - value(base[seed]) for seed in common]
            cells.append(f"{statistics.mean(diffs):+.2f} on {len(diffs)} seeds, lower on {sum(d < 0 for d in diffs)}"
                         if diffs else "-")
        lines.append(f"| {what}: against {columns[0][1]} | " + " | ".join(cells) + " |")
    return lines + [""]


def routed_table(name: str, all_runs: Dict[str, List[dict]]) -> List[str]:
    """A student of several languages against the monolingual students of each (the same method and student
    kind, all gold data, no unlabelled text, from the suite ``compare`` names): test F1 per language, and the
    size of the one model against the sum of the monolingual ones."""
    suite = SUITES.get(name)
    if suite is None or not suite.compare:
        return []
    parts = list(suite.compare)
    zero_shot = any("test_zero_shot" in r for r in all_runs.get(name, []))  # a language none of them trained on
    header = ["student", "method", "seeds"] + [f"{p}: {what}" for p in parts for what in ("one student", "monolingual")]
    header += ["zero-shot"] if zero_shot else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    mono_mb: Dict[str, float] = {}
    for (role, run_name), group in sorted(_group(all_runs.get(name, [])).items(), key=_order):
        if role != "student":
            continue
        row = [run_name, METHOD_NAMES.get(group[0]["method"], group[0]["method"]), str(len(group))]
        for part in parts:
            row.append(_fmt([r["test_parts"][part]["main"] for r in group if part in r.get("test_parts", {})]))
            # the students of the same training of this part's teacher only (a student of one teacher over every
            # part: the monolingual students of the current teachers)
            owner = (suite.routes or {}).get(part)
            trained = (group[0].get("teacher_trainings") or {}).get(owner, 0)
            mono = [r for r in all_runs.get(suite.compare[part], []) if r["role"] == "student"
                    and r["method"] == group[0]["method"] and _student_kind(r) == _student_kind(group[0])
                    and not (r.get("sizes") or {}).get("unlabelled")
                    and ((r.get("teacher_trainings") or {}).get(owner, 0) == trained if owner
                         else not r.get("earlier_teacher"))]
            row.append(_fmt([r["test"]["main"] for r in mono]) + (f" ({len(mono)})" if mono else ""))
            mono_mb.update({part: r["model_mb"] for r in mono if "model_mb" in r})
        if zero_shot:
            row.append(_fmt([r["test_zero_shot"]["main"] for r in group if "test_zero_shot" in r]))
        lines.append("| " + " | ".join(row) + " |")
    sizes = [r["model_mb"] for r in all_runs.get(name, []) if r["role"] == "student" and "model_mb" in r]
    if sizes and len(mono_mb) == len(parts):
        lines += ["", f"One student of {len(parts)} languages: {statistics.median(sizes):.1f} MB; the "
                  f"{len(parts)} monolingual students together: {sum(mono_mb.values()):.1f} MB."]
    return lines


def confidence_table() -> List[str]:
    """The teachers' confidence on the sentences they trained on against unseen ones (teacher_confidence.py)."""
    rows = []
    for path in sorted(RESULTS.glob("*/teacher_confidence.json")):
        data = json.loads(path.read_text())
        # a routed suite (cross-fitting) measures its training sentences only, each part with its own teacher
        teacher = data["suite"] + (" (routed: " + ", ".join(f"{part} by {owner}" for part, owner in
                                                            data["teachers"].items()) + ")" if "teachers" in data else "")
        for split in ("train", "dev", "test"):
            m = data.get(split)
            if not m:
                continue
            rows.append(f"| {teacher} | {split} | {m['tokens']} | {m['entropy_t1']:.3f} | "
                        f"{m['entropy_t2_local']:.3f} | {100 * m['correct']:.1f} | {m['gold_prob']:.3f} |")
    if not rows:
        return []
    return ["## Teacher confidence on its training split and on unseen text", "",
            "`python -m experiments.teacher_confidence <suite>`: mean token entropy (nats) of the teacher's exact "
            "marginals at T=1 and after the reference's local tempering at T=2, token accuracy of its best labels, "
            "and its mean marginal of the gold label.", "",
            "| teacher | split | tokens | entropy, T=1 | entropy, local T=2 | token accuracy | P(gold) |",
            "|---|---|---|---|---|---|---|", *rows, ""]


def arc_marginals_table(results=None) -> List[str]:
    """A parsing teacher's exact tree marginals against the local softmax of its arc scores (arc_marginals.py)."""
    rows = []
    for path in sorted((results or RESULTS).glob("*/arc_marginals.json")):
        data = json.loads(path.read_text())
        for split in ("dev", "unlabelled"):
            m = data.get(split)
            if not m:
                continue
            gold = (f"{100 * m['gold_mass_tree']:.1f} / {100 * m['gold_mass_local']:.1f} | "
                    f"{100 * m['argmax_is_gold_tree']:.1f} / {100 * m['argmax_is_gold_local']:.1f}"
                    if "gold_mass_tree" in m else "- | -")
            rows.append(f"| {data['suite']} | {split} | {m['words']} | {m['entropy_tree']:.3f} / "
                        f"{m['entropy_local']:.3f} | {m['total_variation']:.3f} | {100 * m['argmax_differs']:.1f} | "
                        f"{gold} |")
    if not rows:
        return []
    return ["## Parsing teachers: exact tree marginals against the local softmax", "",
            "`python -m experiments.arc_marginals <suite> --sentences 500`: per word, the entropy (nats) of the "
            "teacher's head distribution from exact tree marginals and from the reference's per-word softmax of "
            "its arc scores (a second-order teacher's sibling scores dropped), their total variation distance, how "
            "often their most likely heads differ, the mass each puts on the gold head and how often its most "
            "likely head is the gold one.", "",
            "| teacher | split | words | entropy, tree / local | total variation | most likely head differs (%) | "
            "gold-head mass, tree / local (%) | most likely head is gold, tree / local (%) |",
            "|---|---|---|---|---|---|---|---|", *rows, ""]


def zeroshot_table() -> List[str]:
    """Students scored on another language's test set (experiments/zeroshot.py)."""
    rows = []
    for path in sorted(RESULTS.glob("*/zeroshot_*.json")):
        data = json.loads(path.read_text())
        run = Path(data["model"]).parent.name
        rows.append(f"| {path.parent.name} | {run} | {data['suite']} | {data['test_sentences']} | "
                    f"{', '.join(data['test_types'])} | {100 * data['f1']:.2f} | {100 * data['f1_all_types']:.2f} |")
    if not rows:
        return []
    return ["## Zero-shot on another language", "",
            "`python -m experiments.zeroshot MODEL --suite SUITE --out ...`: exact-match span F1 on the suite's test "
            "sentences over the types they annotate (the student's other types dropped), and counting those as "
            "errors.", "",
            "| suite | student | scored on | sentences | types | F1 | F1, other types as errors |",
            "|---|---|---|---|---|---|---|", *rows, ""]


def speed_table(all_runs: Dict[str, List[dict]]) -> List[str]:
    """One row per suite and model kind (every student of a kind has the same architecture, so their speeds
    differ only by measurement noise: the median is shown, with the range)."""
    lines = ["| suite | model | runs timed | sentences/s (CPU, 1 thread), median (range) | size on disk (MB) | "
             "load time (s) | speed-up over the teacher |", "|---|---|---|---|---|---|---|"]
    for name, runs in all_runs.items():
        if name in UNTIMED:
            continue
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
        if all(r["role"] == "teacher" for r in runs):  # a teacher-only suite: its table says it all
            continue
        groups = sorted(_group(runs + borrowed_teacher(name, all_runs)).items(), key=_order)
        labels, means, errors = [], [], []
        for (role, run_name), group in groups:
            values = [100 * r["test"]["main"] for r in group]
            labels.append(run_name)
            means.append(statistics.mean(values))
            errors.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        counts = [len(group) for _, group in groups]
        if len(set(counts)) > 1:  # a bar of one seed has no error bar: say how many seeds each bar is
            labels = [f"{label} ({n} seed{'s' if n > 1 else ''})" for label, n in zip(labels, counts)]
        # rotated labels take height from the bars: grow the figure with the longest one
        fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(labels)), max(4.0, 2.5 + 0.075 * max(map(len, labels)))))
        ax.bar(range(len(labels)), means, yerr=errors, capsize=3,
               color=["#555555" if lab.startswith("teacher") else "#4477aa" for lab in labels])
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=45, ha="right")
        metric = "LAS" if SUITES.get(name) and SUITES[name].metric == "las" else "F1"
        single = all(len(group) == 1 for _, group in groups)
        ax.set_ylabel(f"test {metric} (one seed)" if single else f"test {metric} (mean ± sd over seeds)")
        low = min(means) - 5
        ax.set_ylim(max(0, low), min(100, max(means) + 5))
        ax.set_title(textwrap.fill(SUITES[name].title if name in SUITES else name, 70), fontsize=9)
        fig.tight_layout()
        path = PLOTS / f"{name}_methods.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(f"![{name}](plots/{path.name})")
    made += speed_plot(plt, all_runs)
    made += curve_plots(plt, all_runs)
    return made


def _best_student(runs: List[dict]):
    """(median speed, best method mean score) of each student kind of a suite, and the teacher's. Scores count only
    from students given no more gold sentences than the teacher (a ceiling run on every gold tree is no method)."""
    runs = [r for r in runs if not r.get("earlier_teacher")]
    teacher_gold = [r["sizes"]["train"] for r in runs if r["role"] == "teacher" and "sizes" in r]
    if teacher_gold:
        runs = [r for r in runs if r["role"] == "teacher" or r.get("sizes", {}).get("train", 0) <= teacher_gold[0]]
    points = {}
    for kind_runs in _by_kind(runs).items():
        kind, group = kind_runs
        speeds = [r["sentences_per_second"] for r in group if "sentences_per_second" in r]
        if not speeds:
            continue
        by_method = defaultdict(list)
        for r in group:
            by_method[r["run"]].append(100 * r["test"]["main"])
        points[kind] = (statistics.median(speeds), max(statistics.mean(v) for v in by_method.values()))
    return points


def _by_kind(runs: List[dict]) -> Dict[str, List[dict]]:
    kinds = defaultdict(list)
    for r in runs:
        kinds["teacher" if r["role"] == "teacher" else _student_kind(r) + " student"].append(r)
    return kinds


def speed_plot(plt, all_runs: Dict[str, List[dict]]) -> List[str]:
    """One colour per suite: its teacher (square) joined to each student kind (circle), at the kind's median
    speed and its best method's mean score; a legend instead of labels on the points."""
    # a suite with no timed student (fold teachers alone, routed students) draws no line: left out
    best = {n: _best_student(runs + borrowed_teacher(n, all_runs)) for n, runs in all_runs.items() if n not in UNTIMED}
    suites = [n for n, points in best.items() if set(points) - {"teacher"}]
    if not suites:
        return []
    fig, ax = plt.subplots(figsize=(8, 4.8))
    palette = list(plt.cm.tab20.colors) + list(plt.cm.tab20b.colors)  # tab20 alone repeats its last colour
    colours = [palette[i % len(palette)] for i in range(len(suites))]
    for colour, name in zip(colours, suites):
        points = best[name]
        teacher = points.pop("teacher", None)
        for kind, (speed, score) in points.items():
            ax.scatter(speed, score, marker="o" if kind.startswith("CRF") else "^", color=colour, s=30)
            if teacher:
                ax.plot([teacher[0], speed], [teacher[1], score], color=colour, linewidth=0.7, alpha=0.6)
        if teacher:
            ax.scatter(*teacher, marker="s", color=colour, s=36)
        ax.plot([], [], color=colour, marker="s", linestyle="-", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("sentences per second (CPU, one thread, log scale)")
    ax.set_ylabel("test F1 / LAS (best method of each student kind)")
    ax.set_title("teachers (squares) and their students (circles: CRF, triangles: MaxEnt)", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(PLOTS / "speed_accuracy.png", dpi=110)
    plt.close(fig)
    return ["![speed and accuracy](plots/speed_accuracy.png)"]


def curve_points(runs: List[dict]) -> Dict[str, Dict[int, List[float]]]:
    """``{method run name: {U: [test F1 per seed]}}`` of a learning-curve suite (runs named ``u<U>_<name>``;
    the student without KD reads no unlabelled text, so it is the same at every U)."""
    out: Dict[str, Dict[int, List[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r["role"] != "student":
            continue
        name = r["run"]
        if name.startswith("u") and "_" in name and name[1:name.index("_")].isdigit():
            u, method = int(name[1:name.index("_")]), name[name.index("_") + 1:]
        else:
            u, method = 0, name
        out[method][u].append(100 * r["test"]["main"])
    return out


def curve_plots(plt, all_runs: Dict[str, List[dict]]) -> List[str]:
    made = []
    for name, runs in all_runs.items():
        if not name.startswith("curve_"):
            continue
        points = curve_points(runs)
        teachers = runs + borrowed_teacher(name, all_runs)
        teacher = [100 * r["test"]["main"] for r in teachers if r["role"] == "teacher" and not r.get("earlier_teacher")]
        fig, ax = plt.subplots(figsize=(7, 4.2))
        drawn = [m for m in sorted(points) if m != "crf_none"]
        for method, by_u in sorted(points.items()):
            us = sorted(by_u)
            means = [statistics.mean(by_u[u]) for u in us]
            sds = [statistics.stdev(by_u[u]) if len(by_u[u]) > 1 else 0.0 for u in us]
            if method == "crf_none":  # gold only: one value, drawn across
                ax.axhline(means[0], color="#999999", linestyle=":", label="CRF, no KD (gold only)")
                continue
            # methods side by side at each U (2% of the range apart) so that error bars at one U do not hide each other
            shift = (drawn.index(method) - (len(drawn) - 1) / 2) * 0.02 * max(CURVE_U)
            # an earlier teacher's students: hollow and dashed, read against that teacher's own line
            earlier = EARLIER_TEACHER[:-1] in method
            ax.errorbar([u + shift for u in us], means, yerr=sds, marker="o", capsize=3, label=method.replace("_", " "),
                        linestyle="--" if earlier else "-", mfc="white" if earlier else None, alpha=0.7 if earlier else 1)
        if teacher:
            ax.axhline(teacher[0], color="black", linestyle="--", label=f"teacher ({teacher[0]:.2f})")
        # (borrowed_teacher gives only the earlier trainings some student here had)
        for r in sorted((r for r in teachers if r["role"] == "teacher" and r.get("earlier_teacher")),
                        key=lambda r: r["run"]):
            score = 100 * r["test"]["main"]
            ax.axhline(score, color="#777777", linestyle="-.", linewidth=0.8,
                       label=f"{r['run'].split(' (of ')[0]} ({score:.2f})")
        # the whole planned range, so a curve with only its first points run still reads as a curve's start
        ax.set_xlim(-0.1 * max(CURVE_U), 1.1 * max(CURVE_U))
        ax.set_xlabel("unlabelled sentences U (besides the 2,000 gold ones)")
        ax.set_ylabel("test F1 (mean ± sd over seeds)")
        ax.set_title(textwrap.fill(SUITES[name].title if name in SUITES else name, 70), fontsize=9)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        fig.tight_layout()
        path = PLOTS / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(f"![{name}](plots/{path.name})")
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
             "mean ± standard deviation over the seeds listed. A teacher whose model file was lost and retrained is "
             "another teacher: `teacher, earlier training` is the training it replaced (`... training 2` the one "
             "before that, and so on), and a KD student marked `(earlier teacher)` (`(earlier teacher 2)`, ...) was "
             "distilled from that one (its record names no fingerprint of the current "
             "teacher's weights), so its seeds are never averaged with the current teacher's students.", ""]
    for name in [n for n in SUITES if n in all_runs] + [n for n in all_runs if n not in SUITES]:
        title = SUITES[name].title if name in SUITES else name
        lines += [f"## {title}", "", f"Suite `{name}`: `python -m experiments.run {name}`", ""]
        students = [r for r in all_runs[name] if r.get("role") == "student"]
        stale = sum(r.get("dev_embeddings") != "fresh" for r in students)
        if stale:
            lines += [f"{stale} of these {len(students)} student runs predate 2026-12-02: they chose their best epoch "
                      "and annealed on dev scores computed with epoch-1 character vectors "
                      "(`skd_flair/training/fresh_embeddings.py`); their test scores were computed afresh.", ""]
        lines += suite_table(name, all_runs[name] + borrowed_teacher(name, all_runs)) + [""]
        if name.startswith(("recipe_", "converge_", "curve_", "onehot_")) or any(_ratio(((r.get("kd") or {}).get("history")), 0) for r in all_runs[name]):
            lines += recipe_table(all_runs[name]) + [""]
        routed = routed_table(name, all_runs)
        if routed:
            lines += ["Per language (test F1; the monolingual column: the students of "
                      + " and ".join(f"`{c}`" for c in SUITES[name].compare.values())
                      + " with the same method, kind and data, seeds in brackets):", ""] + routed + [""]
    goal = goal_table(all_runs)
    if goal:
        lines += ["## All gold data, the default recipe: structural KD against plain training and the other KD methods",
                  "", "Test F1 per language, trained to convergence, mean ± sd (seeds); the last columns: structural "
                  "KD minus each row over the seeds both have (mean difference; seeds; on how many it is lower). "
                  "Best dev epoch's weights:", ""] + goal + [
                  "", "The last weights (the library's default since 2026-12-05; runs recorded before it have none):",
                  ""] + goal_table(all_runs, "test_final") + [""]
    crossfit = crossfit_table(all_runs)
    if crossfit:
        lines += ["## All gold data, cross-fitted teachers", "",
                  "Each of two folds of the 2,000 gold sentences taught by a teacher of the same stack trained on "
                  "the other fold only (English: whole documents dealt to the folds in turn; Dutch: the two halves; "
                  "`crossfit_en`, `crossfit_nl`; the library's `kd.cross_fit`), against the curve's "
                  "students of the same data, trainer and seeds: test F1, mean ± sd (seeds); differences over "
                  "the seeds both have (mean; seeds; on how many the cross-fitted student is lower).", ""
                  ] + crossfit + [""]
    lines += paired_seeds_table(all_runs)
    if any(r.get("run", "").endswith("_kd_on_text") for r in all_runs.get("curve_en", [])):
        lines += paired_seeds_table(all_runs, TEXT_ONLY, TEXT_ONLY_HEAD)
    lines += paired_seeds_table(all_runs, INPUTS_NL, INPUTS_NL_HEAD)
    lines += paired_seeds_table(all_runs, INPUTS_EN, INPUTS_EN_HEAD)
    lines += selection_table(all_runs)
    lines += ["## Speed and size", ""] + speed_table(all_runs) + [""]
    lines += confidence_table()
    lines += arc_marginals_table()
    lines += zeroshot_table()
    lines += resources_section()
    made = plots(all_runs)
    if made:
        lines += ["## Plots", ""] + made + [""]
    OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
