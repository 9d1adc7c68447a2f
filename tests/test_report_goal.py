"""The all-gold goal table: every method per language, each teacher training's students in rows of their own, and
structural KD against each other row over the seeds both have."""
import json


def _student(run, seed, score, final=None, fingerprint="now"):
    return {"suite": "toy", "run": run, "role": "student", "method": run, "seed": seed, "test": {"main": score},
            "sizes": {"train": 10}, "kd": None if run == "crf_none" else {"history": []},
            **({"teacher_fingerprints": {"toy": fingerprint}} if run != "crf_none" else {}),
            **({"test_final": {"main": final}} if final is not None else {})}


def test_goal_table_pairs_seeds_and_keeps_an_earlier_teachers_students_apart(tmp_path, monkeypatch):
    from experiments import report

    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "GOAL", (("Toy", "toy", "u0_"),))
    folder = tmp_path / "toy"
    folder.mkdir()
    records = {"teacher": {"suite": "toy", "run": "teacher", "role": "teacher", "method": "teacher", "seed": 1,
                           "test": {"main": 0.9}, "fingerprint": "now",
                           "previous_training": {"test": {"main": 0.91}, "fingerprint": "before"}},
               "crf_none-seed1": _student("crf_none", 1, 0.80, final=0.81),
               "crf_none-seed2": _student("crf_none", 2, 0.82),
               "crf_none-seed3": _student("crf_none", 3, 0.70),  # no structural seed 3: not paired
               "u0_crf_structural-seed1": _student("u0_crf_structural", 1, 0.83, final=0.80),
               "u0_crf_structural-seed2": _student("u0_crf_structural", 2, 0.81),
               "u0_crf_structural-seed4": _student("u0_crf_structural", 4, 0.99, fingerprint="before"),
               "u0_crf_posterior-seed2": _student("u0_crf_posterior", 2, 0.80)}
    for name, record in records.items():
        (folder / f"{name}.json").write_text(json.dumps(record))
    runs = report.load()
    row = [c.strip() for c in report.goal_table(runs)[2].strip("|").split("|")]
    assert row[1:4] == ["77.33 ± 6.43 (3)", "82.00 ± 1.41 (2)", "80.00 (1)"]  # seed 4 is the earlier teacher's
    assert row[7:9] == ["+1.00 (2; lower on 1)", "+1.00 (1; lower on 0)"]  # seeds 1-2; seed 2
    earlier = [c.strip() for c in report.goal_table(runs)[3].strip("|").split("|")]  # its own row, not mixed in
    assert earlier[0] == "Toy (`toy`; earlier training of its teacher)"
    assert earlier[1:4] == ["77.33 ± 6.43 (3)", "99.00 (1)", "-"] and earlier[7] == "-"  # no plain seed 4
    last = [c.strip() for c in report.goal_table(runs, "test_final")[2].strip("|").split("|")]
    assert last[1:3] == ["81.00 (1)", "80.00 (1)"] and last[7] == "-1.00 (1; lower on 1)"


def test_crossfit_table_pairs_the_cross_fitted_student_with_the_curves_students():
    from experiments import report

    def teacher(suite, score):
        return {"suite": suite, "run": "teacher", "role": "teacher", "test": {"main": score}}

    runs = {"ner_en": [teacher("ner_en", 0.88)], "teacher_en_fold1": [teacher("teacher_en_fold1", 0.86)],
            "teacher_en_fold2": [teacher("teacher_en_fold2", 0.85)],
            "curve_en": [_student("crf_none", 1, 0.86, final=0.87), _student("crf_none", 2, 0.85),
                         _student("u0_crf_structural", 1, 0.85), _student("u0_crf_structural", 2, 0.84),
                         _student("u0_crf_structural", 3, 0.99, fingerprint="before") | {"earlier_teacher": True}],
            "crossfit_en": [_student("u0_crf_structural", 1, 0.87, final=0.86),
                            _student("u0_crf_structural", 2, 0.84)]}
    table = report.crossfit_table(runs)
    best, last = ([c.strip() for c in line.strip("|").split("|")] for line in table[2:4])
    assert best == ["CoNLL-03 en", "best dev epoch", "88.00 / 86.00 / 85.00", "85.50 ± 0.71 (2)", "84.50 ± 0.71 (2)",
                    "85.50 ± 2.12 (2)", "+0.00 (2; lower on 1)", "+1.00 (2; lower on 0)"]
    assert last[1:] == ["last", "88.00 / 86.00 / 85.00", "87.00 (1)", "-", "86.00 (1)", "-1.00 (1; lower on 1)", "-"]
    assert len(table) == 4  # no Dutch cross-fitted student yet: no Dutch rows


def test_confidence_table_shows_a_routed_suites_training_split_only(tmp_path, monkeypatch):
    from experiments import report

    monkeypatch.setattr(report, "RESULTS", tmp_path)
    split = {"tokens": 10, "entropy_t1": 0.05, "entropy_t2_local": 0.2, "correct": 0.97, "gold_prob": 0.96}
    for suite, record in (("ner_x", {"suite": "ner_x", **{s: split for s in ("train", "dev", "test")}}),
                          ("crossfit_x", {"suite": "crossfit_x", "teachers": {"fold0": "t2", "fold1": "t1"},
                                          "train": split})):
        (tmp_path / suite).mkdir()
        (tmp_path / suite / "teacher_confidence.json").write_text(json.dumps(record))
    rows = [line for line in report.confidence_table() if line.startswith("| crossfit_x") or line.startswith("| ner_x")]
    assert rows[0] == "| crossfit_x (routed: fold0 by t2, fold1 by t1) | train | 10 | 0.050 | 0.200 | 97.0 | 0.960 |"
    assert [r.split("|")[2].strip() for r in rows[1:]] == ["train", "dev", "test"]
