"""Several teachers, one student: the mixed loss against brute-force -sum_y sum_k w_k P_k(y) log P_s(y), and the
TeacherMixture that feeds it to training (``pytest -k multi_teacher``)."""
import pytest
import torch

from skd_flair.distill import StructuralKD, mix_pieces, mix_targets
from skd_flair.distill.batching import collate_targets, split_targets
from skd_flair.training.annotate import annotate
from skd_flair.training.mixture import TeacherMixture
from skd_flair.training.plugin import DistillationPlugin
from tests import toy
from tests.test_kd_exact import LABELS, assert_loss_and_grad, chain, enumerated_ce

WEIGHTS = [0.5, 0.3, 0.2]


@pytest.mark.parametrize("student_crf", [True, False], ids=["crf_student", "maxent_student"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_multi_teacher_mixture_equals_enumerated_cross_entropy(student_crf, temperature):
    # a CRF, a MaxEnt and another CRF teacher: different factorisations, all mapped to the student's parts
    teachers = [chain(11, crf=True)[0], chain(12, crf=False)[0], chain(13, crf=True)[0]]
    student, params = chain(14, crf=student_crf, grad=True)
    objective = StructuralKD(temperature=temperature, temperature_mode="global")
    targets = [objective.targets(t, LABELS, "crf" if student_crf else "maxent") for t in teachers]
    def want():
        return temperature ** 2 * sum(w * enumerated_ce(t, student, temperature) for w, t in zip(WEIGHTS, teachers))

    assert_loss_and_grad(objective.loss(student, mix_targets(targets, WEIGHTS)), want(), list(params.values()))
    # the same mixture formed per sentence from cached pieces, as training builds its batches
    per_teacher = [split_targets(t) for t in targets]
    mixed = [mix_pieces([pieces[b] for pieces in per_teacher], WEIGHTS) for b in range(len(per_teacher[0]))]
    batch = collate_targets(mixed, LABELS, dtype=torch.float64)
    assert_loss_and_grad(objective.loss(student, batch), want(), list(params.values()))


def test_multi_teacher_weights_are_normalised_and_topk_is_refused():
    teachers = [chain(21, crf=True)[0], chain(22, crf=True)[0]]
    objective = StructuralKD()
    a, b = (objective.targets(t, LABELS, "crf") for t in teachers)
    torch.testing.assert_close(mix_targets([a, b], [2, 6]).unary, 0.25 * a.unary + 0.75 * b.unary)
    with pytest.raises(ValueError, match="positive sum"):
        mix_targets([a, b], [0, 0])
    sequences = {"kind": "sequences", "tags": torch.zeros(2, 3, dtype=torch.long), "weights": torch.ones(2) / 2}
    with pytest.raises(ValueError, match="do not mix exactly"):
        mix_pieces([sequences, sequences], [1, 1])


@pytest.fixture(scope="module")
def trained():
    corpus = toy.corpus(n_train=24, seed=5)
    teachers = []
    for seed, crf in ((31, True), (32, False)):
        model = toy.tagger(corpus, use_crf=crf, hidden=8, dim=8, seed=seed)
        teachers.append(model.eval())
    return corpus, teachers


def test_multi_teacher_ensemble_and_routing_through_one_mixture(trained, tmp_path):
    corpus, (crf_teacher, maxent_teacher) = trained
    student = toy.tagger(corpus, use_crf=True, seed=33)
    sentences = list(corpus.train)
    both = [annotate(t, sentences, student, "structural", cache_dir=tmp_path, progress=False)
            for t in (crf_teacher, maxent_teacher)]
    ensemble = TeacherMixture([(both[0], 3.0), (both[1], 1.0)])
    for s in sentences[:5]:
        got, a, b = ensemble.piece(s), both[0].piece(s), both[1].piece(s)
        torch.testing.assert_close(got["pairwise"], 0.75 * a["pairwise"] + 0.25 * b["pairwise"])
        torch.testing.assert_close(got["unary"].sum(-1), torch.ones(len(s)))
    # routing: each teacher annotated only its half; a sentence gets its own teacher's targets
    halves = [annotate(crf_teacher, sentences[:12], student, "structural", cache_dir=tmp_path, progress=False),
              annotate(maxent_teacher, sentences[12:], student, "structural", cache_dir=tmp_path, progress=False)]
    routed = TeacherMixture([(halves[0], 1.0), (halves[1], 1.0)])
    assert len(routed) == len({s.to_tokenized_string() for s in sentences})
    torch.testing.assert_close(routed.piece(sentences[0])["pairwise"], both[0].piece(sentences[0])["pairwise"])
    torch.testing.assert_close(routed.piece(sentences[20])["pairwise"], both[1].piece(sentences[20])["pairwise"])
    # Top-K lists route (each sentence keeps its own teacher's list) but never mix
    unique = list({s.to_tokenized_string(): s for s in sentences}.values())
    topk = [annotate(t, part, student, {"type": "topk", "k": 3}, cache_dir=tmp_path, progress=False)
            for t, part in ((crf_teacher, unique[:10]), (maxent_teacher, unique[10:]))]
    routed_topk = TeacherMixture([(topk[0], 1.0), (topk[1], 1.0)])
    for s, own in ((unique[0], topk[0]), (unique[-1], topk[1])):
        torch.testing.assert_close(routed_topk.piece(s)["tags"], own.piece(s)["tags"])
    both_topk = annotate(crf_teacher, unique, student, {"type": "topk", "k": 3}, cache_dir=tmp_path,
                         progress=False)
    with pytest.raises(ValueError, match="held by several teachers"):
        TeacherMixture([(both_topk, 1.0), (topk[1], 1.0)])
    # the plugin trains on a mixture as on one teacher's targets
    from tests.test_distillation import train

    plugin = DistillationPlugin(ensemble)
    train(student, corpus, tmp_path / "run", epochs=1, plugins=[plugin])
    assert plugin.history[-1]["KD_LOSS"] > 0
    other = annotate(crf_teacher, sentences, student, {"type": "structural", "temperature": 2.0}, cache_dir=tmp_path,
                     progress=False)
    with pytest.raises(ValueError, match="one objective"):
        TeacherMixture([(both[0], 1.0), (other, 1.0)])
