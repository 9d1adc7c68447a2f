"""The experiment runner and report on the smoke suite (bundled data, tiny models), in temporary folders."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_claim_is_exclusive_released_and_taken_over_from_a_dead_holder(tmp_path):
    from experiments.common import claim

    lock = tmp_path / "a" / "run.lock"
    with claim(lock) as first:
        assert first and lock.read_text() == str(os.getpid())
        with claim(lock) as second:  # held by a live process (this one)
            assert not second
    assert not lock.exists()
    lock.write_text(str(_dead_pid()))
    with claim(lock) as taken:
        assert taken and lock.read_text() == str(os.getpid())
    assert not lock.exists()


def test_smoke_suite_runs_resumes_and_reports(tmp_path, monkeypatch):
    from experiments import common, report, run

    monkeypatch.setattr(run, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(run, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(run, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(common, "require_shared", lambda: None)
    lock = tmp_path / "runs" / "smoke" / "crf_none-seed1.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(str(os.getppid()))  # a live process is training crf_none: this runner leaves it alone
    run.main(["smoke", "--teacher-only"])  # the teacher alone, no student
    assert sorted(p.name for p in (tmp_path / "results" / "smoke").glob("*.json")) == ["teacher.json"]
    teacher_stamp = (tmp_path / "results" / "smoke" / "teacher.json").stat().st_mtime
    run.main(["smoke"])
    files = sorted(p.name for p in (tmp_path / "results" / "smoke").glob("*.json"))
    assert files == ["crf_structural-seed1.json", "teacher.json"]
    assert (tmp_path / "results" / "smoke" / "teacher.json").stat().st_mtime == teacher_stamp  # reused
    lock.write_text(str(_dead_pid()))  # that process was killed: its lock must not block resuming
    run.main(["smoke"])
    files = sorted(p.name for p in (tmp_path / "results" / "smoke").glob("*.json"))
    assert files == ["crf_none-seed1.json", "crf_structural-seed1.json", "teacher.json"] and not lock.exists()
    record = json.loads((tmp_path / "results" / "smoke" / "crf_structural-seed1.json").read_text())
    assert record["kd"]["history"] and record["sentences_per_second"] > 0 and "--only crf_structural" in record["command"]
    assert record["epochs"] == 1 == record["best_dev_epoch"] and len(record["dev_score_history"]) == 1
    assert record["test_final"] == record["test"]  # one epoch: the last weights are the best epoch's
    stamp = (tmp_path / "results" / "smoke" / "teacher.json").stat().st_mtime
    run.main(["smoke"])  # everything done: nothing is retrained
    assert (tmp_path / "results" / "smoke" / "teacher.json").stat().st_mtime == stamp
    run.main(["smoke", "--seeds", "2", "--only", "crf_none"])  # a later seed: scores, but no re-timing
    later = json.loads((tmp_path / "results" / "smoke" / "crf_none-seed2.json").read_text())
    assert later["seed"] == 2 and "test" in later and "sentences_per_second" not in later
    # every KD record names the teacher weights that made its targets; a student without KD names none
    first = json.loads((tmp_path / "results" / "smoke" / "teacher.json").read_text())
    assert record["teacher_fingerprints"] == {"smoke": first["fingerprint"]} and later["teacher_fingerprints"] is None
    # a teacher retraining was killed (best epoch so far on disk, run unfinished): not reused but trained on, and
    # the new record keeps the one it replaces in view
    state = tmp_path / "runs" / "smoke" / "teacher" / "run.json"
    state.write_text(json.dumps({**json.loads(state.read_text()), "finished": False}))
    assert run._best(state.parent).exists()
    run.main(["smoke", "--teacher-only"])
    again = json.loads((tmp_path / "results" / "smoke" / "teacher.json").read_text())
    assert again["previous_training"]["test"] == first["test"]
    assert again["previous_training"]["fingerprint"] == first["fingerprint"] and first["previous_training"] is None
    state.write_text(json.dumps({**json.loads(state.read_text()), "finished": False}))
    run.main(["smoke", "--teacher-only"])  # lost again: the chain keeps both trainings it replaced
    third = json.loads((tmp_path / "results" / "smoke" / "teacher.json").read_text())
    assert third["previous_training"]["fingerprint"] == again["fingerprint"]
    assert third["previous_training"]["previous_training"] == again["previous_training"]
    # how long the teacher took to converge is part of its record, like a student's
    assert first["epochs"] == 2 and len(first["dev_score_history"]) == 2 and first["best_dev_epoch"] in (1, 2)

    from experiments import teacher_confidence

    monkeypatch.setattr(teacher_confidence, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(teacher_confidence, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(common, "require_shared", lambda: None)
    teacher_confidence.main(["smoke"])
    confidence = json.loads((tmp_path / "results" / "smoke" / "teacher_confidence.json").read_text())
    assert confidence["dev"]["tokens"] == sum(len(s) for s in run.load_corpus(run.SUITES["smoke"].corpus).dev)
    for split in ("train", "dev", "test"):  # local tempering at T=2 flattens every position's distribution
        assert confidence[split]["entropy_t2_local"] > confidence[split]["entropy_t1"] > 0
        assert 0 < confidence[split]["gold_prob"] < 1
        spans = confidence[split]["spans"]
        gold = sum(len(s.get_spans("ner")) for s in getattr(run.load_corpus(run.SUITES["smoke"].corpus), split))
        assert spans["gold"] == gold == spans["exact"] + spans["wrong_type"] + spans["wrong_boundary"] + spans["missed"]
        assert spans["predicted"] >= spans["exact"] + spans["wrong_type"] + spans["spurious"]

    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(report, "OUT", tmp_path / "RESULTS.md")
    monkeypatch.setattr(report, "PLOTS", tmp_path / "plots")
    report.main()
    text = (tmp_path / "RESULTS.md").read_text()
    assert "crf_structural" in text and "structural KD (exact)" in text and (tmp_path / "plots").is_dir()
    # the probed student's row of the recipe table: one epoch run, best on it, both gradient norms measured
    probed = [line for line in text.splitlines() if line.startswith("| crf_structural |") and "->" in line]
    assert len(probed) == 1 and "| 1/1 |" in probed[0]
    final = 100 * record["test_final"]["main"]
    assert f"| {final:.2f} | {final:.2f} (1) |" in probed[0]  # test F1 and the last weights' (one epoch: the same)
    assert "| smoke | dev |" in text  # the teacher-confidence table


def test_sizes_of_a_corpus_without_a_training_split():
    """A zero-shot target language has dev and test only; its size record must not crash the run."""
    from flair.data import Sentence
    from flair.datasets import FlairDatapointDataset

    from experiments.run import SuiteRunner

    class Target:  # the fields of a flair Corpus that sizes() reads
        train = None
        dev = FlairDatapointDataset([Sentence("a b")])
        test = FlairDatapointDataset([Sentence("c"), Sentence("d e")])

    assert SuiteRunner.sizes(Target()) == {"train": 0, "unlabelled": 0, "dev": 1, "test": 2}


def test_routed_and_ensemble_suites_mix_their_teachers(tmp_path, monkeypatch):
    """Per-language teachers into one student: each part's sentences are annotated by its own teacher only, and
    the record scores each part's test sentences on their own. An ensemble gives every sentence the mean of its
    teachers' targets."""
    from dataclasses import replace

    import torch

    from experiments import common, run
    from skd_flair.training.cache import sentence_key
    from skd_flair.training.corpora import PART

    for name, value in (("RESULTS", tmp_path / "results"), ("RUNS", tmp_path / "runs"), ("CACHE", tmp_path / "cache")):
        monkeypatch.setattr(run, name, value)
    monkeypatch.setattr(common, "require_shared", lambda: None)
    smoke = run.SUITES["smoke"]
    parts = {"a": {**smoke.corpus, "sample_train": 30}, "b": {**smoke.corpus, "skip_train": 30, "sample_train": 30}}
    student = smoke.students[1]
    for part, spec in parts.items():  # part a also has a monolingual KD student to compare with
        monkeypatch.setitem(run.SUITES, f"smoke_{part}", replace(smoke, name=f"smoke_{part}", corpus=spec,
                                                                 students=[student] if part == "a" else []))
        run.main([f"smoke_{part}"] if part == "a" else [f"smoke_{part}", "--teacher-only"])
    routed = replace(smoke, name="smoke_routed", teacher_from="smoke_a", routes={"a": "smoke_a", "b": "smoke_b"},
                     compare={"a": "smoke_a", "b": "smoke_b"}, zero_shot={**smoke.corpus, "sample_test": 7},
                     corpus={"type": "concat", "corpora": [{**spec, "name": p} for p, spec in parts.items()]},
                     students=[student])
    monkeypatch.setitem(run.SUITES, "smoke_routed", routed)

    runner = run.SuiteRunner(routed, [1])
    _, _, train = runner.data(student)
    stub = run.build_model(student.model, train, teacher=runner.teacher())
    mixture = runner.targets(runner.teacher(), student, stub, train)
    for member, part in zip(mixture.members, ("a", "b")):
        assert set(member.entries) == {sentence_key(s) for s in train.train if s.get_metadata(PART) == part}
    assert [t.key for t in mixture.members] != [mixture.members[0].key] * 2  # two teachers, two target sets

    run.main(["smoke_routed"])
    record = json.loads((tmp_path / "results" / "smoke_routed" / "crf_structural-seed1.json").read_text())
    assert set(record["test_parts"]) == {"a", "b"} and record["kd"]["history"]
    # every student is also tested on the zero-shot corpus (span F1 over its test types): its kept model scores the
    # same there
    from experiments.zeroshot import zero_shot_scores

    kept = run.MODEL_CLASSES["tagger"].load(str(run._best(tmp_path / "runs" / "smoke_routed" / "crf_structural-seed1")))
    alone = list(run.load_corpus(routed.zero_shot).test)
    assert len(alone) == 7 and record["test_zero_shot"] == zero_shot_scores(kept, alone)
    assert record["test_zero_shot"]["test"]["gold"] == sum(len(s.get_spans("ner")) for s in alone)

    from experiments import report

    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(report, "SUITES", run.SUITES)
    mono = json.loads((tmp_path / "results" / "smoke_a" / "crf_structural-seed1.json").read_text())
    table = report.routed_table("smoke_routed", report.load())
    row = next(line for line in table if line.startswith("| crf_structural |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:] == [f"{100 * record['test_parts']['a']['main']:.2f}", f"{100 * mono['test']['main']:.2f} (1)",
                         f"{100 * record['test_parts']['b']['main']:.2f}", "-",
                         f"{100 * record['test_zero_shot']['main']:.2f}"]
    assert [r["run"] for r in report.borrowed_teacher("smoke_routed", report.load())] == [
        "teacher (of smoke_a)", "teacher (of smoke_b)"]

    # an ensemble: both teachers on every sentence, each sentence's target the equal-weight mean of theirs
    ensemble = replace(smoke, name="smoke_ensemble", corpus=parts["a"], teacher_from="smoke_a",
                       ensemble=["smoke_a", "smoke_b"], students=[student])
    runner = run.SuiteRunner(ensemble, [1])
    _, _, train_a = runner.data(student)
    mixed = runner.targets(runner.teacher(), student, stub, train_a)
    assert [len(t) for t in mixed.members] == [len(train_a.train)] * 2
    sentence = train_a.train[0]
    a, b = (t.piece(sentence) for t in mixed.members)
    assert all(torch.allclose(mixed.piece(sentence)[k], (a[k] + b[k]) / 2, atol=1e-6) for k in a if k != "kind")
    assert not all(torch.equal(a[k], b[k]) for k in a if k != "kind")  # two different teachers

    # cross-fitting: each half taught by the teacher of the other half; the half that brings no test split gets
    # no part score (and costs the record nothing)
    crossed = replace(routed, name="smoke_crossed", routes={"a": "smoke_b", "b": "smoke_a"}, compare=None,
                      zero_shot=None, corpus={"type": "concat", "corpora": [
                          {**parts["a"], "name": "a"}, {**parts["b"], "sample_dev": 0, "sample_test": 0, "name": "b"}]})
    monkeypatch.setitem(run.SUITES, "smoke_crossed", crossed)
    runner = run.SuiteRunner(crossed, [1])
    _, _, train_x = runner.data(student)
    crossing = runner.targets(runner.teacher(), student, stub, train_x)
    half_a = [s for s in train_x.train if s.get_metadata(PART) == "a"]
    by_b = run.annotate(runner.teacher("smoke_b"), half_a, stub, student.objective, cache_dir=False)
    assert crossing.members[0].key == by_b.key != mixture.members[0].key
    run.main(["smoke_crossed"])
    record = json.loads((tmp_path / "results" / "smoke_crossed" / "crf_structural-seed1.json").read_text())
    assert set(record["test_parts"]) == {"a"} and record["sizes"]["test"] == len(run.load_corpus(parts["a"]).test)
    # what those targets are like: each half measured with the teacher that annotates it, pooled over both
    from experiments import teacher_confidence

    monkeypatch.setattr(teacher_confidence, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(teacher_confidence, "RUNS", tmp_path / "runs")
    monkeypatch.setitem(teacher_confidence.SUITES, "smoke_crossed", crossed)
    teacher_confidence.main(["smoke_crossed"])
    measured = json.loads((tmp_path / "results" / "smoke_crossed" / "teacher_confidence.json").read_text())["train"]
    by_b = teacher_confidence._split_confidence(runner.teacher("smoke_b"), half_a)
    assert measured["parts"]["a"]["entropy_t1"] == pytest.approx(by_b["entropy_t1"])
    tokens = [p["tokens"] for p in measured["parts"].values()]
    assert measured["tokens"] == sum(len(s) for s in train_x.train) == sum(tokens)
    assert measured["correct"] == pytest.approx(sum(p["correct"] * p["tokens"] for p in measured["parts"].values())
                                                / measured["tokens"])

    lonely = replace(routed, routes={"a": "smoke_a", "b": "smoke_b", "c": "smoke_b"})  # a part the corpus lacks
    with pytest.raises(SystemExit, match="no training sentence of part 'c'"):
        run.SuiteRunner(lonely, [1]).targets(runner.teacher(), student, stub, train)
    orphans = replace(routed, routes={"a": "smoke_a"})  # part b's 30 sentences would go untaught
    with pytest.raises(SystemExit, match="30 training sentences belong to no routed part"):
        run.SuiteRunner(orphans, [1]).targets(runner.teacher(), student, stub, train)


def test_ready_configurations_are_those_the_suites_write(tmp_path, monkeypatch):
    """resources/configs/shared is generated from experiments/suites.py; a suite changed without regenerating
    (as the low-resource suites once were, their files still naming the leaking 2,000-sentence teacher) fails."""
    from pathlib import Path

    from experiments import export_configs, resources

    committed = Path(export_configs.OUT)
    monkeypatch.setattr(export_configs, "OUT", tmp_path)
    monkeypatch.setattr(export_configs, "REPO", tmp_path.parent)  # paths in comments are relative to REPO
    export_configs.main()
    # the suites were built with this process's resource cache (a test folder under pytest), the files with ~
    cache = str(resources.CACHE)
    fresh = {p.relative_to(tmp_path): p.read_text().split("\n", 1)[1].replace(cache, "~/.cache/skd_flair")
             for p in tmp_path.rglob("*.yaml")}
    ours = {p.relative_to(committed): p.read_text().split("\n", 1)[1] for p in committed.rglob("*.yaml")}
    assert sorted(fresh) == sorted(ours), "run python -m experiments.export_configs"
    stale = [str(name) for name in fresh if fresh[name] != ours[name]]
    assert not stale, f"run python -m experiments.export_configs: {stale[:5]}"


def test_zeroshot_scores_only_the_test_sets_types():
    from flair.data import Sentence

    from experiments.zeroshot import span_f1, spans

    sentence = Sentence("Ana mora em Lisboa no Brasil Open")
    sentence[0:1].add_label("ner", "PER")
    sentence[3:4].add_label("ner", "LOC")
    sentence[0:1].add_label("pred", "PER")
    sentence[3:4].add_label("pred", "ORG")  # wrong type
    sentence[5:7].add_label("pred", "MISC")  # a type the test set does not annotate
    gold = spans([sentence], "ner")
    kept = span_f1(gold, spans([sentence], "pred", keep={"PER", "LOC", "ORG"}))
    assert (kept["correct"], kept["predicted"], kept["gold"]) == (1, 2, 2) and kept["f1"] == 0.5
    every = span_f1(gold, spans([sentence], "pred"))
    assert every["predicted"] == 3 and abs(every["f1"] - 0.4) < 1e-9


def test_gold_target_students_need_no_teacher_and_say_what_taught_them(tmp_path, monkeypatch):
    from dataclasses import replace

    from experiments import common, run
    from experiments.suites import Student

    monkeypatch.setattr(run, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(run, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(run, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(common, "require_shared", lambda: None)
    smoke = run.SUITES["smoke"]
    student = Student("crf_gold", smoke.students[0].model, {"type": "structural"}, method="structural (gold)",
                      case="1a", mix={"type": "constant", "weight": 0.5}, hard_targets="gold")
    path = replace(student, name="crf_path", hard_targets="teacher")
    monkeypatch.setitem(run.SUITES, "smoke_gold", replace(smoke, name="smoke_gold", teacher_from="smoke",
                                                          students=[student, path]))
    run.main(["smoke_gold", "--only", "crf_gold"])  # the smoke teacher was never trained: gold targets need none
    record = json.loads((tmp_path / "results" / "smoke_gold" / "crf_gold-seed1.json").read_text())
    assert not (tmp_path / "runs" / "smoke").exists()
    assert record["targets"].startswith("gold labels") and record["teacher_fingerprints"] is None
    history = record["kd"]["history"]
    # certain targets, and per token the KD term is the gold loss (every sentence is labelled, so the two agree)
    assert history and history[0]["TEACHER_ENTROPY"] == 0.0
    assert history[0]["KD_LOSS"] == pytest.approx(history[0]["GOLD_LOSS"], rel=1e-5)
    with pytest.raises(SystemExit, match="needs the teacher of suite smoke"):  # the teacher's path does need one
        run.main(["smoke_gold", "--only", "crf_path"])
    run.main(["smoke", "--teacher-only"])
    run.main(["smoke_gold", "--only", "crf_path"])
    taught = json.loads((tmp_path / "results" / "smoke_gold" / "crf_path-seed1.json").read_text())
    teacher = json.loads((tmp_path / "results" / "smoke" / "teacher.json").read_text())
    assert taught["targets"].startswith("the teacher's best path")
    assert taught["teacher_fingerprints"] == {"smoke": teacher["fingerprint"]}
    assert taught["kd"]["history"][0]["TEACHER_ENTROPY"] == 0.0
