"""The span-CRF (semi-Markov) student, proven against enumeration: its structure, and structural KD from a
BIOES CRF teacher and from a span teacher equal to the cross-entropy over whole segmentations."""
import math

import pytest
import torch

from skd_flair.distill import ChainScores, StructuralKD
from skd_flair.distill.batching import collate_targets, split_targets
from skd_flair.distill.labels import LabelMismatchError
from skd_flair.distill.mixture import mix_targets
from skd_flair.distill.segments import SegmentScores, SpanCRFStudent, valid_bioes
from skd_flair.distill.span_scores import SpanScores
from skd_flair.structs.semi_markov import SemiMarkovCRF
from skd_flair.training.cache import compress, decompress
from tests import brute

TYPES = ["PER", "LOC"]
STUDENT = ["PER", "O", "LOC"]  # the O label in the middle: maps must follow names, not positions
TAGS = ["O"] + [f"{r}-{t}" for t in TYPES for r in "BIES"]


def brute_score(segments, transitions, y):
    s = sum(segments[e, e - i, a] for i, e, a in y)
    return s + sum(transitions[y[k][2], y[k + 1][2]] for k in range(len(y) - 1))


def student_scores(batch, n, width, seed, grad=False):
    g = torch.Generator().manual_seed(seed)
    seg = torch.randn(batch, n, width, len(STUDENT), generator=g, dtype=torch.float64)
    seg[:, :, 1:, STUDENT.index("O")] = float("-inf")  # O segments are one token wide
    trans = torch.randn(len(STUDENT), len(STUDENT), generator=g, dtype=torch.float64)
    if grad:
        seg.requires_grad_(True)
        trans.requires_grad_(True)
    return seg, trans


def brute_log_probs(seg, trans, n, width):
    ys = brute.segmentations(n, len(STUDENT), width, outside=STUDENT.index("O"))
    scores = torch.stack([brute_score(seg, trans, y) for y in ys])
    return {tuple(y): s for y, s in zip(ys, scores - torch.logsumexp(scores, 0))}


@pytest.mark.parametrize("width", [1, 2, 3])
def test_span_crf_structure_matches_enumeration(width):
    seg, trans = student_scores(3, 4, width, seed=width)
    lengths = torch.tensor([4, 2, 3])
    crf = SemiMarkovCRF(seg, trans, lengths)
    for b, n in enumerate(lengths.tolist()):
        ys = brute.segmentations(n, len(STUDENT), width, outside=STUDENT.index("O"))
        scores = torch.stack([brute_score(seg[b], trans, y) for y in ys])
        assert crf.log_partition[b].item() == pytest.approx(torch.logsumexp(scores, 0).item(), abs=1e-10)
        p = torch.softmax(scores, 0)
        segs, bounds = torch.zeros(4, width, len(STUDENT), dtype=torch.float64), torch.zeros(3, 3, 3, dtype=torch.float64)
        for py, y in zip(p, ys):
            for i, e, a in y:
                segs[e, e - i, a] += py
            for (_, e, a), (_, _, a2) in zip(y, y[1:]):
                bounds[e, a, a2] += py
        assert torch.allclose(crf.marginals[b], segs, atol=1e-10)
        assert torch.allclose(crf.boundary_marginals[b], bounds, atol=1e-10)
        best = ys[int(scores.argmax())]
        assert crf.decode()[b] == best
        one = [best if i == b else crf.decode()[i] for i in range(3)]
        assert crf.score(one)[b].item() == pytest.approx(scores.max().item(), abs=1e-10)


def test_span_crf_gradients_of_log_partition_are_the_marginals():
    seg, trans = student_scores(2, 4, 3, seed=7, grad=True)
    crf = SemiMarkovCRF(seg, trans, torch.tensor([4, 3]))
    crf.log_partition.sum().backward()
    assert torch.allclose(seg.grad.nan_to_num(0.0) * crf.band_mask.unsqueeze(-1), crf.marginals, atol=1e-10)
    assert torch.allclose(trans.grad, crf.boundary_marginals.sum((0, 1)), atol=1e-10)


def chain_teacher(n, seed, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    size = len(TAGS)
    return ChainScores(scale * torch.randn(1, n, size, generator=g, dtype=torch.float64), torch.tensor([n]), TAGS,
                       scale * torch.randn(size, size, generator=g, dtype=torch.float64),
                       torch.randn(size, generator=g, dtype=torch.float64),
                       torch.randn(size, generator=g, dtype=torch.float64))


def as_segmentation(tags):
    """BIOES tags -> segments over STUDENT labels, or None when the tags are not a valid BIOES sequence."""
    out, start = [], None
    for k, tag in enumerate(tags):
        role, _, name = tag.partition("-")
        if role == "O":
            if start is not None:
                return None
            out.append((k, k, STUDENT.index("O")))
        elif role == "S":
            if start is not None:
                return None
            out.append((k, k, STUDENT.index(name)))
        elif role == "B":
            if start is not None:
                return None
            start = (k, name)
        elif start is None or start[1] != name:
            return None
        elif role == "E":
            out.append((start[0], k, STUDENT.index(name)))
            start = None
    return None if start is not None else out


def cross_entropy(teacher_probs, student_log_probs):
    return -sum(p * student_log_probs[y] for y, p in teacher_probs.items())


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_span_crf_structural_kd_from_a_bioes_crf_is_the_sequence_cross_entropy(temperature):
    n, width = 4, 4
    teacher = chain_teacher(n, seed=3)
    valid = {}
    for y in brute.sequences(n, len(TAGS)):
        tags = [TAGS[k] for k in y]
        segmentation = as_segmentation(tags)
        if segmentation is not None:
            s = brute.chain_score(teacher.emissions[0], teacher.transitions, teacher.start, teacher.end, y)
            valid[tuple(segmentation)] = s / temperature
    log_z = torch.logsumexp(torch.stack(list(valid.values())), 0)
    teacher_probs = {y: torch.exp(s - log_z) for y, s in valid.items()}
    seg, trans = student_scores(1, n, width, seed=11)
    expected = temperature ** 2 * cross_entropy(teacher_probs, brute_log_probs(seg[0] / temperature, trans / temperature,
                                                                                n, width))
    objective = StructuralKD(temperature=temperature, temperature_mode="global")
    targets = objective.targets(teacher, STUDENT, SpanCRFStudent(max_width=width))
    loss = objective.loss(SegmentScores(seg, trans, torch.tensor([n]), STUDENT), targets)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-9)
    assert float(targets.dropped_mass.max()) < 1e-12


def test_span_crf_structural_kd_from_a_span_teacher_is_the_set_cross_entropy():
    n, width = 4, 3
    g = torch.Generator().manual_seed(5)
    spans = torch.randn(1, n, n, len(TYPES), generator=g, dtype=torch.float64)
    teacher = SpanScores(spans, torch.tensor([n]), TYPES, max_width=width)
    sets = brute.span_sets(n, len(TYPES), width)
    scores = torch.stack([sum((spans[0, i, j, e] for i, j, e in y), torch.tensor(0.0, dtype=torch.float64))
                          for y in sets])
    probs = torch.softmax(scores, 0)
    teacher_probs = {}
    for p, y in zip(probs, sets):
        covered = {m for i, j, _ in y for m in range(i, j + 1)}
        segs = [(i, j, STUDENT.index(TYPES[e])) for i, j, e in y] + \
               [(m, m, STUDENT.index("O")) for m in range(n) if m not in covered]
        teacher_probs[tuple(sorted(segs))] = p
    seg, trans = student_scores(1, n, width, seed=13)
    expected = cross_entropy(teacher_probs, brute_log_probs(seg[0], trans, n, width))
    objective = StructuralKD()
    loss = objective.loss(SegmentScores(seg, trans, torch.tensor([n]), STUDENT),
                          objective.targets(teacher, STUDENT, SpanCRFStudent(max_width=width)))
    assert loss.item() == pytest.approx(expected.item(), abs=1e-9)


def test_span_crf_valid_bioes_restriction_leaves_valid_sequences_their_relative_weights():
    teacher = chain_teacher(3, seed=2)
    restricted = valid_bioes(teacher)
    crf, full = restricted.crf(), teacher.crf()
    for y in brute.sequences(3, len(TAGS)):
        tags = torch.tensor([y])
        ok = as_segmentation([TAGS[k] for k in y]) is not None
        assert bool(torch.isfinite(crf.score(tags))) == ok
        if ok:
            assert (crf.score(tags) - full.score(tags)).abs().item() < 1e-12


def test_span_crf_segments_wider_than_the_student_lose_their_mass_visibly():
    teacher = chain_teacher(4, seed=3, scale=0.1)
    narrow = StructuralKD().targets(teacher, STUDENT, SpanCRFStudent(max_width=2))
    wide = StructuralKD().targets(teacher, STUDENT, SpanCRFStudent(max_width=4))
    assert float(wide.dropped_mass.max()) < 1e-12
    coverage = SemiMarkovCRF.coverage(narrow.segments).sum(-1)
    assert torch.allclose(coverage + narrow.dropped_mass, torch.ones_like(coverage), atol=1e-12)
    assert float(narrow.dropped_mass.min()) > 1e-4


def test_span_crf_targets_split_store_collate_and_mix_without_change():
    teachers = [chain_teacher(4, seed=s) for s in (1, 2)]
    student = SpanCRFStudent(max_width=3)
    a, b = (StructuralKD().targets(t, STUDENT, student) for t in teachers)
    pieces = [decompress(compress(p, threshold=0.0)) for p in split_targets(a)]
    back = collate_targets(pieces, STUDENT, dtype=torch.float64)
    assert torch.allclose(back.segments, a.segments, atol=1e-6) and torch.allclose(back.boundaries, a.boundaries,
                                                                                   atol=1e-6)
    mixed = mix_targets([a, b], [1.0, 3.0])
    assert torch.allclose(mixed.segments, 0.25 * a.segments + 0.75 * b.segments)
    # the mixture's loss is the weighted mean of the teachers' losses: the loss is linear in the targets
    seg, trans = student_scores(1, 4, 3, seed=4)
    scores = SegmentScores(seg, trans, torch.tensor([4]), STUDENT)
    losses = [StructuralKD().loss(scores, t).item() for t in (a, b, mixed)]
    assert losses[2] == pytest.approx(0.25 * losses[0] + 0.75 * losses[1], abs=1e-9)


def test_span_crf_refuses_teachers_it_cannot_learn_from_exactly():
    bio = ChainScores(torch.randn(1, 3, 3), torch.tensor([3]), ["O", "B-PER", "I-PER"], torch.randn(3, 3))
    with pytest.raises(LabelMismatchError, match="BIOES"):
        StructuralKD().targets(bio, ["PER", "O"], "span_crf")
    scores = SegmentScores(*student_scores(1, 4, 2, seed=1), torch.tensor([4]), STUDENT)
    targets = StructuralKD().targets(chain_teacher(4, seed=1), STUDENT, SpanCRFStudent(max_width=3))
    with pytest.raises(LabelMismatchError, match="3 tokens wide"):
        StructuralKD().loss(scores, targets)
    assert math.isfinite(StructuralKD().loss(scores, StructuralKD().targets(
        chain_teacher(4, seed=1), STUDENT, SpanCRFStudent(max_width=2))).item())


# ---------------------------------------------------------------------- the Flair student
def span_crf_student(corpus, seed=5, **kw):
    from flair.embeddings import OneHotEmbeddings

    from skd_flair.models.span_crf import SpanCRFTagger

    torch.manual_seed(seed)
    types = corpus.make_label_dictionary("ner", add_unk=False)
    emb = OneHotEmbeddings.from_corpus(corpus, embedding_length=8, min_freq=1)
    return SpanCRFTagger(emb, types, "ner", max_width=3, hidden_size=8, mlp_size=8, **kw)


def test_span_crf_student_forward_loss_is_the_objective_on_its_own_scores():
    from flair.data import Sentence

    from skd_flair.models.kd_student import KD_TARGETS
    from skd_flair.training.annotate import annotate
    from tests import toy

    corpus = toy.corpus(n_train=20)
    teacher = toy.tagger(corpus, use_crf=True, seed=2, tag_format="BIOES")
    student = span_crf_student(corpus, kd_objective={"type": "structural"}).eval()
    sentences = [Sentence(s.to_tokenized_string()) for s in list(corpus.train)[:6]]
    targets = annotate(teacher, sentences, student, student.kd_objective, progress=False)
    toy.attach_targets(sentences, targets)
    with torch.no_grad():
        loss, _ = student.forward_loss(sentences)
        ordered = sorted(sentences, key=len, reverse=True)
        logits, lengths = student.span_logits(ordered)
        for sentence in ordered:  # the student's cached one-hot vectors carry the teacher's embedding name
            sentence.clear_embeddings()
        direct = StructuralKD().targets(teacher.teacher_scores(ordered), student.label_names, student.factorisation)
        stored = collate_targets([s.get_metadata(KD_TARGETS) for s in ordered], student.label_names)
        want = StructuralKD().loss(student.segment_scores(logits, lengths), stored).sum()
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    # the stored targets are the teacher's (to the cache's float32 and its 1e-7 sparsity threshold)
    assert torch.allclose(stored.segments.double(), direct.segments, atol=1e-6)
    assert torch.allclose(stored.boundaries.double(), direct.boundaries, atol=1e-6)
    assert targets.student == "span_crf"


@pytest.mark.slow
def test_span_crf_student_trains_with_kd_saves_and_predicts_the_same(tmp_path):
    from flair.trainers import ModelTrainer

    from skd_flair.models.span_crf import SpanCRFTagger
    from skd_flair.training.annotate import annotate
    from skd_flair.training.plugin import DistillationPlugin
    from tests import toy

    corpus = toy.corpus(n_train=30)
    teacher = toy.tagger(corpus, use_crf=True, seed=2, tag_format="BIOES")
    ModelTrainer(teacher, corpus).train(tmp_path / "teacher", max_epochs=3, mini_batch_size=8, learning_rate=0.1)
    student = span_crf_student(corpus)
    targets = annotate(teacher, corpus.train, student, {"type": "structural"}, progress=False)
    plugin = DistillationPlugin(targets, mix={"type": "constant", "weight": 0.5})
    ModelTrainer(student, corpus).train(tmp_path / "student", max_epochs=3, mini_batch_size=8, learning_rate=0.1,
                                        plugins=[plugin], save_final_model=True)
    assert [row["EPOCH"] for row in plugin.history] == [1, 2, 3]
    assert plugin.history[-1]["KD_LOSS"] < plugin.history[0]["KD_LOSS"]  # it learns from the teacher
    loaded = SpanCRFTagger.load(tmp_path / "student" / "final-model.pt")
    assert loaded.kd_objective.config() == student.kd_objective.config()
    assert torch.equal(loaded.transitions.detach(), student.transitions.detach())
    student.eval()
    test = list(corpus.test)
    student.predict(test, label_name="a")
    loaded.predict(test, label_name="b")
    got = [[(sp.unlabeled_identifier, sp.tag) for sp in s.get_spans("a")] for s in test]
    again = [[(sp.unlabeled_identifier, sp.tag) for sp in s.get_spans("b")] for s in test]
    assert got == again and any(got)
    with pytest.raises(LabelMismatchError, match="span-CRF"):
        ModelTrainer(toy.tagger(corpus, use_crf=True), corpus).train(
            tmp_path / "wrong", max_epochs=1, mini_batch_size=8, plugins=[DistillationPlugin(targets)])
