"""Gold labels as a CRF student's structural-KD targets make the KD term the gold loss (experiments/gold_targets)."""
import pytest
import torch

from experiments.gold_targets import gold_targets, teacher_path_targets
from skd_flair.models import KD_TARGETS, UNLABELLED
from tests import toy


@pytest.fixture(scope="module")
def corpus():
    return toy.corpus()


def _loss_with(model, batch, pieces, weight):
    model.kd_weight = weight
    for s, piece in zip(batch, pieces):
        s.add_metadata(KD_TARGETS, piece)
    with torch.no_grad():
        return model.forward_loss(batch)[0].item()


def test_structural_kd_on_gold_targets_is_the_gold_loss(corpus):
    model = toy.tagger(corpus, use_crf=True).eval()
    with torch.no_grad():
        model.crf.transitions.normal_()  # trained-looking transitions, so a wrong pair target would show
    batch = toy.sentences(16, seed=3)
    targets = gold_targets(batch, model, {"type": "structural"})
    with torch.no_grad():
        plain = model.forward_loss(batch)[0].item()
    model.kd_objective = targets.build_objective()
    pieces = [targets.piece(s) for s in batch]
    for weight in (1.0, 0.5):
        assert _loss_with(model, batch, pieces, weight) == pytest.approx(plain, rel=1e-5)
        assert model.kd_stats["kd_loss"] == pytest.approx(plain, rel=1e-5)  # the KD term ran and is the gold loss
    # a target that is not the gold path (the first token's label moved) is not the gold loss
    wrong = dict(pieces[0])
    wrong["unary"] = torch.roll(pieces[0]["unary"].to_dense(), 1, dims=-1) if pieces[0]["unary"].is_sparse \
        else torch.roll(pieces[0]["unary"], 1, dims=-1)
    assert _loss_with(model, batch, [wrong, *pieces[1:]], 1.0) != pytest.approx(plain, rel=1e-5)


def test_only_labelled_sentences_and_crf_students(corpus):
    batch = toy.sentences(4, seed=5)
    with pytest.raises(ValueError, match="linear-chain CRF"):
        gold_targets(batch, toy.tagger(corpus, use_crf=False), {"type": "structural"})
    with pytest.raises(ValueError, match="structural"):
        gold_targets(batch, toy.tagger(corpus, use_crf=True), {"type": "posterior"})
    batch[0].add_metadata(UNLABELLED, True)
    with pytest.raises(ValueError, match="unlabelled"):
        gold_targets(batch, toy.tagger(corpus, use_crf=True), {"type": "structural"})


@pytest.mark.parametrize("use_crf", [True, False])
def test_teacher_path_targets_are_the_teachers_best_path(corpus, use_crf):
    teacher = toy.tagger(corpus, use_crf=use_crf, seed=1).eval()
    if use_crf:
        with torch.no_grad():
            teacher.crf.transitions.normal_()
    student = toy.tagger(corpus, use_crf=True, seed=2)
    batch = toy.sentences(12, seed=6)
    targets = teacher_path_targets(teacher, batch, student, {"type": "structural"})
    teacher.predict(batch, label_name="path", force_token_predictions=True)
    for s in batch:
        unary = targets.piece(s)["unary"]
        unary = unary.to_dense() if unary.is_sparse else unary
        predicted = [student.label_names[i] for i in unary.argmax(-1).tolist()]
        assert predicted == [t.get_label("path").value for t in s] and torch.all(unary.max(-1).values == 1)


def test_an_unknown_kind_of_one_hot_target_is_refused_where_the_student_is_defined():
    from experiments.suites import Student

    with pytest.raises(ValueError, match="hard_targets is one of \\['gold', 'teacher'\\], not 'silver'"):
        Student("x", {}, {"type": "structural"}, hard_targets="silver")
