"""No suite lets a student read, as unlabelled text, the gold training sentences of its teacher."""
import pytest

from experiments.leaks import LEAK_SHARE, overlaps, refuse_leaks
from experiments.suites import SUITES, Student, Suite
from skd_flair.registry import ConfigError
from skd_flair.training.corpora import load_corpus


def _column_file(path, sentences):
    path.write_text("".join("".join(f"{w}\tO\n" for w in s) + "\n" for s in sentences))


@pytest.fixture()
def folder(tmp_path):
    _column_file(tmp_path / "train.txt", [[f"w{i}", f"x{i}", "end"] for i in range(40)])
    for split in ("dev", "test"):
        _column_file(tmp_path / f"{split}.txt", [["d", "e"], ["f"]])
    return tmp_path


def _suite(folder, name, teacher_sentences, skip, teacher_from=None):
    corpus = {"type": "column", "data_folder": str(folder), "column_format": {0: "text", 1: "ner"},
              "sample_train": teacher_sentences}
    text = {"type": "text", "format": "column", "data_folder": str(folder), "train_file": "train.txt",
            "skip_train": skip, "sample_train": 20}
    students = [Student("gold_only", {}), Student("kd", {}, {"type": "structural"}, unlabelled=text)]
    return Suite(name, name, "f1", corpus, {}, {}, students, {}, teacher_from=teacher_from)


def test_a_student_reading_its_teachers_gold_sentences_is_refused(folder):
    leaking = _suite(folder, "leaking", teacher_sentences=30, skip=20)  # unlabelled 20..40 overlaps 0..30
    with pytest.raises(SystemExit, match=r"leaking.*kd: 10 of 20 unlabelled sentences"):
        refuse_leaks(leaking, {"leaking": leaking}, load_corpus)


def test_a_borrowed_teacher_is_checked_on_its_own_training_data(folder):
    owner = _suite(folder, "owner", teacher_sentences=40, skip=0)
    honest_alone = _suite(folder, "borrower", teacher_sentences=10, skip=10)  # disjoint from its own corpus...
    borrower = _suite(folder, "borrower", teacher_sentences=10, skip=10, teacher_from="owner")  # ...not the owner's
    suites = {"owner": owner, "borrower": borrower}
    assert [o.shared for o in refuse_leaks(honest_alone, {**suites, "borrower": honest_alone}, load_corpus)] == [0]
    with pytest.raises(SystemExit, match="owner's teacher"):
        refuse_leaks(borrower, suites, load_corpus)
    # asking only for the gold-only student skips the leaking one
    assert refuse_leaks(borrower, suites, load_corpus, only=["gold_only"]) == []


def test_every_routed_teacher_is_checked(folder):
    # two per-part teachers: one trained on sentences 0..10, the other on 0..40; the student reads 10..30
    first, second = _suite(folder, "first", 10, 0), _suite(folder, "second", 40, 0)
    routed = _suite(folder, "routed", teacher_sentences=10, skip=10)
    routed.routes = {"a": "first"}
    suites = {"first": first, "second": second, "routed": routed}
    assert [(o.teacher_suite, o.shared) for o in refuse_leaks(routed, suites, load_corpus)] == [("first", 0)]
    routed.routes = {"a": "first", "b": "second"}
    with pytest.raises(SystemExit, match="kd: 20 of 20 unlabelled sentences .* second's teacher"):
        refuse_leaks(routed, suites, load_corpus)
    routed.routes, routed.ensemble = None, ["first", "second"]  # an ensemble: every member is checked too
    with pytest.raises(SystemExit, match="second's teacher"):
        refuse_leaks(routed, suites, load_corpus)


def test_a_few_repeated_sentences_are_not_a_leak(folder):
    # the teacher's 10 sentences, once more inside a 20-sentence unlabelled slice of another file
    other = folder / "other"
    other.mkdir()
    _column_file(other / "train.txt", [[f"w{i}", f"x{i}", "end"] for i in range(1)]
                 + [[f"new{i}"] for i in range(99)])
    suite = _suite(folder, "s", teacher_sentences=10, skip=0)
    suite.students[1].unlabelled = {**suite.students[1].unlabelled, "data_folder": str(other), "sample_train": 100}
    (found,) = overlaps(suite, {"s": suite}, load_corpus)
    assert (found.shared, found.unlabelled) == (1, 100) and found.share <= LEAK_SHARE and not found.leaks


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(n for n, s in SUITES.items() if any(st.unlabelled for st in s.students)))
def test_no_suite_leaks(name, shared_data):
    suite = SUITES[name]
    try:
        if suite.prepare is not None:
            suite.prepare()
        found = refuse_leaks(suite, SUITES, load_corpus)
    except ConfigError as error:  # data built by experiments.resources, absent on this machine
        if "does not exist" not in str(error):
            raise
        pytest.skip(f"suite {name}'s data is not built here: {error}")
    assert found and all(o.unlabelled > 0 for o in found)
