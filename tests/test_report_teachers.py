"""The report keeps students of a lost-and-retrained teacher apart from the students of the one that replaced it."""
import json

import pytest


def _write(folder, name, record):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(record))


def _student(run, seed, score, kd=True, fingerprints=None, **extra):
    record = {"suite": "toy", "run": run, "role": "student", "method": "structural" if kd else "none",
              "seed": seed, "test": {"main": score}, "sizes": {"train": 10, "unlabelled": 5 if kd else 0},
              "kd": {"history": []} if kd else None, **extra}
    if fingerprints is not None:
        record["teacher_fingerprints"] = fingerprints
    return record


@pytest.fixture
def report(tmp_path, monkeypatch):
    from experiments import report

    monkeypatch.setattr(report, "RESULTS", tmp_path)
    return report


def _rows(report):
    table = report.suite_table("toy", report.load()["toy"])
    return {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table[2:])}


def test_students_of_an_earlier_teacher_training_get_their_own_rows(tmp_path, report):
    folder = tmp_path / "toy"
    _write(folder, "teacher", {"suite": "toy", "run": "teacher", "role": "teacher", "method": "teacher", "seed": 1,
                               "test": {"main": 0.80}, "fingerprint": "new",
                               "previous_training": {"test": {"main": 0.82}, "fingerprint": None}})
    _write(folder, "kd-seed1", _student("kd", 1, 0.70))  # recorded before records named their teacher
    _write(folder, "kd-seed2", _student("kd", 2, 0.60, fingerprints={"toy": "new"}))
    _write(folder, "kd-seed3", _student("kd", 3, 0.62, fingerprints={"toy": "new"}))
    _write(folder, "none-seed1", _student("none", 1, 0.50, kd=False))
    rows = _rows(report)
    assert rows["teacher"][-1] == "80.00" and rows["teacher, earlier training"][-1] == "82.00"
    assert rows["kd"][5] == "2" and rows["kd"][-1] == "61.00 ± 1.41"  # the new teacher's two seeds only
    assert rows["kd (earlier teacher)"][5] == "1" and rows["kd (earlier teacher)"][-1] == "70.00"
    assert rows["none"][-1] == "50.00"  # a student without KD has no teacher to tell apart


def test_a_teacher_reused_or_never_retrained_keeps_every_student_together(tmp_path, report):
    folder = tmp_path / "toy"
    _write(folder, "teacher", {"suite": "toy", "run": "teacher", "role": "teacher", "method": "teacher", "seed": 1,
                               "test": {"main": 0.80}})  # written before teachers carried a fingerprint
    _write(folder, "kd-seed1", _student("kd", 1, 0.70))
    _write(folder, "kd-seed2", _student("kd", 2, 0.72, fingerprints={"toy": "reused"}))
    rows = _rows(report)
    assert set(rows) == {"teacher", "kd"} and rows["kd"][5] == "2"


def test_a_student_of_another_fingerprint_is_an_earlier_teachers(tmp_path, report):
    folder = tmp_path / "toy"
    _write(folder, "teacher", {"suite": "toy", "run": "teacher", "role": "teacher", "method": "teacher", "seed": 1,
                               "test": {"main": 0.80}, "fingerprint": "third",
                               "previous_training": {"test": {"main": 0.81}, "fingerprint": "second"}})
    _write(folder, "kd-seed1", _student("kd", 1, 0.70, fingerprints={"toy": "second"}))
    _write(folder, "kd-seed2", _student("kd", 2, 0.72, fingerprints={"toy": "third"}))
    rows = _rows(report)
    assert rows["kd"][-1] == "72.00" and rows["kd (earlier teacher)"][-1] == "70.00"
    # the curve plot and the speed plot read the current teacher only
    runs = report.load()["toy"]
    assert [r["test"]["main"] for r in runs if r["role"] == "teacher" and not r.get("earlier_teacher")] == [0.80]


def test_a_teacher_retrained_twice_keeps_each_trainings_students_with_it(tmp_path, report):
    """ner_nl: trained again (fingerprint "second"), then again ("third"); the first training's students, recorded
    before fingerprints, stay read against the first training's score, not the second's."""
    folder = tmp_path / "toy"
    _write(folder, "teacher", {"suite": "toy", "run": "teacher", "role": "teacher", "method": "teacher", "seed": 1,
                               "test": {"main": 0.80}, "fingerprint": "third",
                               "previous_training": {"test": {"main": 0.81}, "fingerprint": "second",
                                                     "previous_training": {"test": {"main": 0.79},
                                                                           "fingerprint": None}}})
    _write(folder, "kd-seed1", _student("kd", 1, 0.60))  # before fingerprints: the first training's
    _write(folder, "kd-seed2", _student("kd", 2, 0.70, fingerprints={"toy": "second"}))
    _write(folder, "kd-seed3", _student("kd", 3, 0.72, fingerprints={"toy": "third"}))
    _write(folder, "kd-seed4", _student("kd", 4, 0.74, fingerprints={"toy": "unknown"}))  # not in the chain
    rows = _rows(report)
    assert rows["teacher, earlier training"][-1] == "81.00" and rows["teacher, earlier training 2"][-1] == "79.00"
    assert rows["kd"][-1] == "72.00" and rows["kd (earlier teacher 2)"][-1] == "60.00"
    assert rows["kd (earlier teacher)"][5] == "2" and rows["kd (earlier teacher)"][-1] == "72.00 ± 2.83"


def test_the_owner_suites_rows_stay_with_the_training_its_note_names_after_two_more_retrainings(tmp_path, report,
                                                                                                  monkeypatch):
    """ner_nl: 81.58 made its own rows; retrained for borrowing suites (80.37, no fingerprint), then twice more with
    fingerprints. Its own pre-fingerprint rows keep 81.58, a borrower's pre-fingerprint rows 80.37."""
    from types import SimpleNamespace

    borrower = SimpleNamespace(routes=None, ensemble=None, teacher_from="toy", metric="f1", compare=None,
                               title="borrows toy's teacher")
    monkeypatch.setattr(report, "SUITES", {"borrower": borrower})
    chain = {"test": {"main": 0.8060}, "fingerprint": "second",
             "previous_training": {"test": {"main": 0.8037}, "fingerprint": None,
                                   "previous_training": {"test": {"main": 0.8158}, "note": "made toy's rows"}}}
    _write(tmp_path / "toy", "teacher", {"suite": "toy", "run": "teacher", "role": "teacher", "method": "teacher",
                                         "seed": 1, "test": {"main": 0.7954}, "fingerprint": "third",
                                         "previous_training": chain})
    _write(tmp_path / "toy", "kd-seed1", _student("kd", 1, 0.57))
    _write(tmp_path / "borrower", "kd-seed1", {**_student("kd", 1, 0.75), "suite": "borrower"})
    runs = report.load()
    assert [r["run"] for r in runs["toy"] if r["role"] == "student"] == ["kd (earlier teacher 3)"]
    assert [r["run"] for r in runs["borrower"]] == ["kd (earlier teacher 2)"]
    rows = _rows(report)
    assert rows["teacher, earlier training 3"][-1] == "81.58" and rows["kd (earlier teacher 3)"][-1] == "57.00"


def test_a_routed_student_is_compared_with_monolingual_students_of_the_same_teacher_training(tmp_path, report,
                                                                                             monkeypatch):
    """multi_ennl: its Dutch part was taught by an earlier training of the Dutch teacher; the monolingual Dutch KD
    column reads that training's students only, and only the trainings its students had get teacher rows."""
    from types import SimpleNamespace

    mono = SimpleNamespace(routes=None, ensemble=None, teacher_from="nl", metric="f1", compare=None, title="mono")
    multi = SimpleNamespace(routes={"a": "nl"}, ensemble=None, teacher_from="nl", metric="f1", compare={"a": "mono"},
                            title="multi")
    monkeypatch.setattr(report, "SUITES", {"mono": mono, "multi": multi})
    chain = {"test": {"main": 0.806}, "fingerprint": "second",
             "previous_training": {"test": {"main": 0.804}, "fingerprint": None}}
    _write(tmp_path / "nl", "teacher", {"suite": "nl", "run": "teacher", "role": "teacher", "method": "teacher",
                                        "seed": 1, "test": {"main": 0.795}, "fingerprint": "third",
                                        "previous_training": chain})
    for seed, score, fingerprints in ((1, 0.61, None), (2, 0.62, {"nl": "second"}), (3, 0.63, {"nl": "third"})):
        _write(tmp_path / "mono", f"kd-seed{seed}", {**_student("kd", seed, score, fingerprints=fingerprints),
                                                     "suite": "mono", "sizes": {"train": 10}})
    _write(tmp_path / "multi", "kd-seed1", {**_student("kd", 1, 0.80), "suite": "multi", "sizes": {"train": 20},
                                            "test_parts": {"a": {"main": 0.76}}})
    runs = report.load()
    assert [r["run"] for r in report.borrowed_teacher("multi", runs)] == [
        "teacher (of nl)", "teacher, earlier training 2 (of nl)"]  # not the 80.6 training: no student of it here
    row = next(line for line in report.routed_table("multi", runs) if line.startswith("| kd"))
    assert [c.strip() for c in row.strip("|").split("|")][3:] == ["76.00", "61.00 (1)"]  # seed 1's teacher only
    # one teacher over every part (multi4_one): the monolingual students of the current teacher
    one = SimpleNamespace(routes=None, ensemble=None, teacher_from=None, metric="f1", compare={"a": "mono"},
                          title="one")
    monkeypatch.setitem(report.SUITES, "one", one)
    _write(tmp_path / "one", "kd-seed1", {**_student("kd", 1, 0.80, fingerprints={"one": "own"}), "suite": "one",
                                          "sizes": {"train": 20}, "test_parts": {"a": {"main": 0.70}}})
    row = next(line for line in report.routed_table("one", report.load()) if line.startswith("| kd"))
    assert [c.strip() for c in row.strip("|").split("|")][3:] == ["70.00", "63.00 (1)"]


def test_a_retraining_before_fingerprints_leaves_its_own_suites_students_with_the_earlier_training(tmp_path, report):
    """ner_nl / ner_de: retrained (model lost) for suites that borrow the teacher; the owner suite's KD rows
    were distilled from the earlier training, the borrowing suites' from the new one."""
    _write(tmp_path / "toy", "teacher", {"suite": "toy", "run": "teacher", "role": "teacher", "method": "teacher",
                                         "seed": 1, "test": {"main": 0.80},
                                         "previous_training": {"test": {"main": 0.82}, "note": "..."}})
    _write(tmp_path / "toy", "kd-seed1", _student("kd", 1, 0.70))
    _write(tmp_path / "toy", "none-seed1", _student("none", 1, 0.50, kd=False))
    rows = _rows(report)
    assert set(rows) == {"teacher", "teacher, earlier training", "kd (earlier teacher)", "none"}


def test_a_suite_borrowing_a_retrained_teacher_shows_the_training_its_students_had(tmp_path, report, monkeypatch):
    from types import SimpleNamespace

    borrower = SimpleNamespace(routes=None, ensemble=None, teacher_from="toy", metric="f1", compare=None,
                               title="borrows toy's teacher")
    monkeypatch.setattr(report, "SUITES", {"borrower": borrower})
    _write(tmp_path / "toy", "teacher", {"suite": "toy", "run": "teacher", "role": "teacher", "method": "teacher",
                                         "seed": 1, "test": {"main": 0.80},
                                         "previous_training": {"test": {"main": 0.82}, "note": "..."}})
    _write(tmp_path / "borrower", "kd-seed1", {**_student("kd", 1, 0.70), "suite": "borrower"})
    runs = report.load()
    assert [r["run"] for r in runs["borrower"] + report.borrowed_teacher("borrower", runs)] == [
        "kd", "teacher (of toy)"]  # made after the retraining, for this suite: the earlier training is not its


def test_a_teacher_reproduced_to_its_record_keeps_its_earlier_students(tmp_path, report):
    """`--reproduce`: the lost teacher trained again exactly as before scored its record's every test number, so the
    students recorded before teachers had fingerprints are its students; one of another fingerprint is not."""
    folder = tmp_path / "toy"
    _write(folder, "teacher", {"suite": "toy", "run": "teacher", "role": "teacher", "method": "teacher", "seed": 1,
                               "test": {"main": 0.80}, "fingerprint": "same", "reproduced": {"date": "2026-12-04"}})
    _write(folder, "kd-seed1", _student("kd", 1, 0.70))
    _write(folder, "kd-seed2", _student("kd", 2, 0.72, fingerprints={"toy": "same"}))
    _write(folder, "kd-seed3", _student("kd", 3, 0.50, fingerprints={"toy": "other"}))
    rows = _rows(report)
    assert rows["kd"][5] == "2" and rows["kd"][-1] == "71.00 ± 1.41"
    assert rows["kd (earlier teacher)"][-1] == "50.00"
    # reproduced again on another machine: the same predictions, weights that differ in their last bits
    _write(folder, "teacher", {"suite": "toy", "run": "teacher", "role": "teacher", "method": "teacher", "seed": 1,
                               "test": {"main": 0.80}, "fingerprint": "again", "same_training_fingerprints": ["same"],
                               "reproduced": {"date": "2026-12-05"}})
    _write(folder, "kd-seed4", _student("kd", 4, 0.74, fingerprints={"toy": "again"}))
    rows = _rows(report)
    assert rows["kd"][5] == "3" and rows["kd"][-1] == "72.00 ± 2.00"
    assert rows["kd (earlier teacher)"][-1] == "50.00"


def test_selection_table_pairs_each_runs_two_models_and_counts_the_differences(tmp_path, report):
    folder = tmp_path / "toy"
    _write(folder, "a-seed1", _student("a", 1, 0.80, test_final={"main": 0.83}, best_dev_epoch=5, epochs=20))
    _write(folder, "a-seed2", _student("a", 2, 0.85, test_final={"main": 0.84}, best_dev_epoch=18, epochs=20))
    _write(folder, "b-seed1", _student("b", 1, 0.70, kd=False))  # no last-weights score: not a pair
    lines = report.selection_table(report.load())
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| toy")]
    assert rows == [["toy", "a", "1", "5/20", "80.00", "83.00", "+3.00"],
                    ["toy", "a", "2", "18/20", "85.00", "84.00", "-1.00"]]
    assert "2 runs: the last weights score higher in 1, lower in 1; mean difference +1.00 F1 (sd 2.83)." in lines
    assert "Best dev epoch before 60% of the epochs run: 1 runs, the last weights higher in 1, mean difference " \
           "+3.00 F1." in lines
    assert "Best dev epoch later: 1 runs, the last weights higher in 0, mean difference -1.00 F1." in lines
    assert report.selection_table({"toy": [_student("b", 1, 0.70, kd=False)]}) == []


def test_paired_seeds_table_compares_students_over_the_seeds_both_have():
    from experiments.report import paired_seeds_table

    def run(name, seed, test, dev):
        return {"run": name, "role": "student", "seed": seed, "test": {"main": test}, "dev_score_history": [0.5, dev]}

    runs = {"a": [run("plain", 1, 0.80, 0.90), run("plain", 2, 0.82, 0.92), run("plain", 3, 0.81, 0.91)],
            "b": [run("kd", 1, 0.79, 0.91), run("kd", 2, 0.80, 0.90), run("kd", 4, 0.99, 0.99)]}
    lines = paired_seeds_table(runs, (("a", "plain", "no KD"), ("b", "kd", "KD"), ("b", "absent", "none")))
    table = {line.split(" | ")[0]: line for line in lines if line.startswith("| ")}
    assert "| 3 | 81.00 (91.00) | - |" in lines and "| 4 | - | 99.00 (99.00) |" in lines  # the absent run has no column
    assert table["| test: against no KD"].endswith("| -1.50 on 2 seeds, lower on 2 |")  # seeds 1 and 2 only
    assert table["| best dev: against no KD"].endswith("| -0.50 on 2 seeds, lower on 1 |")
    assert paired_seeds_table({"a": runs["a"]}, (("a", "plain", "no KD"), ("b", "kd", "KD"))) == []
    titled = paired_seeds_table(runs, (("a", "plain", "no KD"), ("b", "kd", "KD")), ("## Title", "Intro."))
    assert titled[:3] == ["## Title", "", "Intro."] and titled[4:] == lines[4:]
