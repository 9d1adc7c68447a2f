"""Every KD pairing's factorized loss against brute-force -sum_y P_t(y) log P_s(y), values and gradients."""
import itertools

import pytest
import torch

from skd_flair.distill import (OBJECTIVES, AnnealedMix, ChainScores, ConstantMix, LabelMismatchError,
                               StructuralKD, TokenMarginals, TreeScores, mix_losses, temper, to_student)
from tests import brute

LABELS = ["O", "B-X", "I-X"]
LENGTHS = [3, 1, 2]
TOL = 1e-9


def rand(g, *shape, scale=1.0):
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


def chain(seed, crf=True, labels=LABELS, lengths=LENGTHS, grad=False):
    g = torch.Generator().manual_seed(seed)
    b, n, size = len(lengths), max(lengths), len(labels)
    parts = dict(emissions=rand(g, b, n, size))
    if crf:
        parts.update(transitions=rand(g, size, size), start=rand(g, size), end=rand(g, size))
    if grad:
        for x in parts.values():
            x.requires_grad_(True)
    return ChainScores(lengths=torch.tensor(lengths), labels=list(labels), **parts), parts


def seq_log_probs(scores: ChainScores, b: int, n: int, temperature=1.0):
    """All label sequences of item b with their log-probabilities under `scores` at temperature T."""
    ys = list(brute.sequences(n, scores.emissions.shape[-1]))
    em = scores.emissions[b] / temperature
    if scores.is_crf:
        t = temperature
        table = torch.stack([brute.chain_score(em, scores.transitions / t, scores.start / t, scores.end / t, y)
                             for y in ys])
        return ys, table - torch.logsumexp(table, 0)
    logp = torch.log_softmax(em, -1)
    return ys, torch.stack([sum(logp[i, y[i]] for i in range(n)) for y in ys])


def enumerated_ce(teacher: ChainScores, student: ChainScores, temperature=1.0):
    out = []
    for b, n in enumerate(teacher.lengths.tolist()):
        _, lt = seq_log_probs(teacher, b, n, temperature)
        _, ls = seq_log_probs(student, b, n, temperature)
        out.append(-(lt.exp() * ls).sum())
    return torch.stack(out)


def assert_loss_and_grad(loss, want, params):
    torch.testing.assert_close(loss, want, atol=TOL, rtol=0)
    w = torch.linspace(0.5, 1.5, len(loss), dtype=torch.float64)
    got_g = torch.autograd.grad((loss * w).sum(), params, retain_graph=True, allow_unused=True)
    want_g = torch.autograd.grad((want * w).sum(), params, allow_unused=True)
    for p, a, b in zip(params, got_g, want_g):
        zero = torch.zeros_like(p)
        torch.testing.assert_close(zero if a is None else a, zero if b is None else b, atol=1e-9, rtol=0)


@pytest.mark.parametrize("teacher_crf, student_crf, case", [(True, True, "1a"), (True, False, "2a"),
                                                            (False, True, "3"), (False, False, "maxent")])
@pytest.mark.parametrize("temperature_mode, temperature", [("local", 1.0), ("global", 2.0)])
def test_chain_pairings_equal_enumerated_cross_entropy(teacher_crf, student_crf, case, temperature_mode, temperature):
    teacher, _ = chain(1, crf=teacher_crf)
    student, params = chain(2, crf=student_crf, grad=True)
    objective = StructuralKD(temperature=temperature, temperature_mode=temperature_mode)
    loss = objective.loss(student, objective.targets(teacher, LABELS, "crf" if student_crf else "maxent"))
    want = temperature ** 2 * enumerated_ce(teacher, student, temperature)
    assert_loss_and_grad(loss, want, list(params.values()))


def test_labels_are_aligned_by_name_and_special_labels_carry_no_mass():
    # the teacher orders its labels differently and has Flair's CRF bookkeeping labels
    teacher_labels = ["I-X", "<START>", "O", "B-X", "<STOP>"]
    teacher, _ = chain(3, labels=teacher_labels)
    student, params = chain(4, grad=True, labels=LABELS + ["<unk>"])
    loss = StructuralKD().loss(student, StructuralKD().targets(teacher, student.labels, "crf"))
    masked = teacher.without_special()
    reordered = ChainScores(masked.emissions[..., [2, 3, 0, 1]], teacher.lengths, LABELS + ["<unk>"],
                            masked.transitions[[2, 3, 0, 1]][:, [2, 3, 0, 1]],
                            masked.start[[2, 3, 0, 1]], masked.end[[2, 3, 0, 1]])
    assert_loss_and_grad(loss, enumerated_ce(reordered, student), list(params.values()))


def test_a_teacher_label_the_student_lacks_is_a_clear_error():
    teacher, _ = chain(5, labels=["O", "B-X", "I-Y"])
    with pytest.raises(LabelMismatchError, match="I-Y"):
        StructuralKD().targets(teacher, LABELS, "crf")


def test_crf_token_marginals_have_no_exact_map_to_a_crf_student():
    teacher, _ = chain(6)
    m = teacher.unary_marginals()
    with pytest.raises(LabelMismatchError, match="not independent"):
        to_student(m, LABELS, "crf")


def test_token_kd_is_tempered_emission_cross_entropy():
    teacher, _ = chain(7)
    student, params = chain(8, crf=True, grad=True)
    objective = OBJECTIVES.build({"type": "token", "temperature": 3.0})
    loss = objective.loss(student, objective.targets(teacher, LABELS, "crf"))
    mask = student.mask.unsqueeze(-1)
    q = torch.softmax(teacher.emissions / 3.0, -1)
    want = -9.0 * (q * torch.log_softmax(student.emissions / 3.0, -1) * mask).sum((1, 2))
    assert_loss_and_grad(loss, want, list(params.values()))


@pytest.mark.parametrize("student_crf", [True, False])
def test_posterior_kd_matches_enumerated_student_marginals(student_crf):
    teacher, _ = chain(9)
    student, params = chain(10, crf=student_crf, grad=True)
    objective = OBJECTIVES.build({"type": "posterior"})
    loss = objective.loss(student, objective.targets(teacher, LABELS, "crf" if student_crf else "maxent"))
    want = []
    for b, n in enumerate(LENGTHS):
        ys, lt = seq_log_probs(teacher, b, n)
        _, ls = seq_log_probs(student, b, n)
        total = 0
        for t in range(n):
            for j in range(len(LABELS)):
                q = sum(p for y, p in zip(ys, lt.exp()) if y[t] == j)
                m = sum(p for y, p in zip(ys, ls.exp()) if y[t] == j)
                total = total - q * torch.log(m)
        want.append(total)
    assert_loss_and_grad(loss, torch.stack(want), list(params.values()))


@pytest.mark.parametrize("student_crf", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_topk_kd_is_weighted_nll_of_the_teachers_k_best(student_crf, weighted):
    teacher, _ = chain(11)
    student, params = chain(12, crf=student_crf, grad=True)
    k = 4
    objective = OBJECTIVES.build({"type": "topk", "k": k, "weighted": weighted})
    loss = objective.loss(student, objective.targets(teacher, LABELS, "crf" if student_crf else "maxent"))
    want = []
    for b, n in enumerate(LENGTHS):
        ys, lt = seq_log_probs(teacher, b, n)
        _, ls = seq_log_probs(student, b, n)
        best = torch.argsort(lt, descending=True)[:k]  # a length-1 sentence has only 3 sequences
        w = torch.softmax(lt[best], 0) if weighted else torch.full((len(best),), 1.0 / len(best), dtype=torch.float64)
        want.append(-(w * ls[best]).sum())
    assert_loss_and_grad(loss, torch.stack(want), list(params.values()))


# ---------------------------------------------------------------------------------------------- trees
RELS = ["nsubj", "root"]


def all_offset_tags(n_max, rels):
    return [f"{o}_{r}" for o in range(-n_max, n_max + 1) if o != 0 for r in rels]


def tree_teacher(seed, lengths, projective, grad=False):
    g = torch.Generator().manual_seed(seed)
    n = max(lengths)
    return TreeScores(rand(g, len(lengths), n + 1, n + 1), torch.tensor(lengths),
                      rand(g, len(lengths), n + 1, n + 1, len(RELS)), RELS, projective=projective)


def enumerated_tree_ce(teacher: TreeScores, student: ChainScores, local: bool, temperature=1.0):
    tags = student.labels
    out = []
    for b, n in enumerate(teacher.lengths.tolist()):
        arcs = teacher.arcs[b] / temperature
        rel_logp = torch.log_softmax(teacher.relations[b] / temperature, -1)
        logp_s = torch.log_softmax(student.emissions[b] / temperature, -1)
        total = 0
        if local:  # independent heads per word: the reference code's teacher
            head_logp = torch.log_softmax(arcs[:n + 1, 1:n + 1].masked_fill(
                torch.eye(n + 1, dtype=torch.bool)[:, 1:], float("-inf")), 0)
            structures = [(h, head_logp[list(h), range(n)].sum()) for h in itertools.product(range(n + 1), repeat=n)
                          if all(h[i] != i + 1 for i in range(n))]
        else:
            ts = brute.trees(n, teacher.projective, True)
            table = torch.stack([sum(arcs[h, d] for d, h in enumerate(t, start=1)) for t in ts])
            structures = list(zip(ts, table - torch.logsumexp(table, 0)))
        for heads, lp_tree in structures:
            for rels in itertools.product(range(len(RELS)), repeat=n):
                lp = lp_tree + sum(rel_logp[heads[i], i + 1, rels[i]] for i in range(n))
                y = [tags.index(f"{heads[i] - (i + 1)}_{RELS[rels[i]]}") for i in range(n)]
                total = total - lp.exp() * sum(logp_s[i, y[i]] for i in range(n))
        out.append(total)
    return torch.stack(out)


@pytest.mark.parametrize("projective", [False, True])
@pytest.mark.parametrize("arc_marginals", ["tree", "local"])
def test_case_1b_tree_teacher_to_offset_tagger_equals_enumeration(projective, arc_marginals):
    lengths = [3, 1, 2]
    teacher = tree_teacher(13, lengths, projective)
    tags = all_offset_tags(3, RELS)
    student, params = chain(14, crf=False, labels=tags, lengths=lengths, grad=True)
    objective = StructuralKD(arc_marginals=arc_marginals)
    loss = objective.loss(student, objective.targets(teacher, tags, "maxent"))
    want = enumerated_tree_ce(teacher, student, local=arc_marginals == "local")
    assert_loss_and_grad(loss, want, list(params.values()))


def test_case_1b_global_temperature_equals_enumeration():
    lengths = [3, 2]
    teacher = tree_teacher(15, lengths, projective=False)
    tags = all_offset_tags(3, RELS)
    student, params = chain(16, crf=False, labels=tags, lengths=lengths, grad=True)
    objective = StructuralKD(temperature=2.0, temperature_mode="global")
    loss = objective.loss(student, objective.targets(teacher, tags, "maxent"))
    assert_loss_and_grad(loss, 4.0 * enumerated_tree_ce(teacher, student, False, 2.0), list(params.values()))


def test_offset_tags_the_student_lacks_are_renormalised_or_refused():
    lengths = [3]
    teacher = tree_teacher(17, lengths, projective=False)
    tags = [t for t in all_offset_tags(3, RELS) if not t.startswith("2_")]
    m = teacher.marginals()
    kept = to_student(m, tags, "maxent")
    assert (kept.dropped_mass > 0).any()
    torch.testing.assert_close(kept.probs.sum(-1), torch.ones(1, 3, dtype=torch.float64))
    with pytest.raises(LabelMismatchError):
        to_student(m, tags, "maxent", unknown="error")


# ---------------------------------------------------------------------------------------------- schedules
def test_local_temperature_tempers_each_position():
    teacher, _ = chain(18)
    m = teacher.marginals()
    hot = temper(m, 2.0)
    for b, n in enumerate(LENGTHS):
        for t in range(n - 1):
            p = m.pairwise[b, t].sqrt()
            torch.testing.assert_close(hot.pairwise[b, t], p / p.sum())
        first = m.unary[b, 0].sqrt()
        torch.testing.assert_close(hot.unary[b, 0], first / first.sum())
    torch.testing.assert_close(hot.unary.sum(-1), hot.mask.double())
    tokens = temper(TokenMarginals(m.unary, m.lengths, labels=m.labels), 3.0)
    torch.testing.assert_close(tokens.probs.sum(-1), tokens.mask.double())


def test_mix_schedules_and_unlabelled_sentences():
    assert AnnealedMix(1.0)(0) == 1.0 and AnnealedMix(1.0)(50) == 0.5 and AnnealedMix(1.0)(150) == 0.0
    assert AnnealedMix(0.5)(100) == 0.5 and ConstantMix(0.3)(99) == 0.3
    from skd_flair.distill import DEFAULT_MIX, MIX_SCHEDULES
    from skd_flair.training.plugin import DistillationPlugin

    # the default recipe: KD and gold weighted equally from the first step to the last when no mix is given
    # (distill passes the configuration's kd.mix, null when left out, to the plugin)
    default = DistillationPlugin(targets=None).mix
    assert [default(p) for p in (0.0, 0.5, 25.0, 300.0)] == [0.5] * 4
    assert MIX_SCHEDULES.build(DEFAULT_MIX)(0.0) == 0.5 and DEFAULT_MIX == {"type": "constant", "weight": 0.5}
    kd, gold = torch.tensor([1.0, 2.0]), torch.tensor([10.0, float("nan")])
    mixed = mix_losses(kd, gold, 0.25, torch.tensor([True, False]))
    torch.testing.assert_close(mixed, torch.tensor([0.25 + 7.5, 2.0]))
    with pytest.raises(ValueError):
        ConstantMix(1.5)
