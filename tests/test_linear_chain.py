import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from skd_flair.structs import LinearChainCRF, StructureInputError
from tests import brute

LENGTHS = [4, 1, 3, 2]


def random_crf(seed=0, lengths=LENGTHS, num_labels=3, scale=1.0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    n = max(lengths)
    em = (torch.randn(len(lengths), n, num_labels, generator=g, dtype=torch.float64) * scale)
    trans = torch.randn(num_labels, num_labels, generator=g, dtype=torch.float64) * scale
    start = torch.randn(num_labels, generator=g, dtype=torch.float64) * scale
    end = torch.randn(num_labels, generator=g, dtype=torch.float64) * scale
    for x in (em, trans, start, end):
        x.requires_grad_(requires_grad)
    return em, trans, torch.tensor(lengths), start, end


def enumerate_batch(em, trans, lengths, start, end):
    """Per batch item: (sequences, scores) by brute force."""
    return [brute.chain_table(em[b], trans, start, end, int(n)) for b, n in enumerate(lengths)]


def test_log_partition_marginals_pairwise_match_enumeration():
    em, trans, lengths, start, end = random_crf()
    crf = LinearChainCRF(em, trans, lengths, start, end)
    log_z, unary, pairwise = crf.log_partition, crf.marginals, crf.pairwise_marginals
    for b, (ys, scores) in enumerate(enumerate_batch(em, trans, lengths, start, end)):
        n = int(lengths[b])
        assert log_z[b].item() == pytest.approx(torch.logsumexp(scores, 0).item(), abs=1e-10)
        p = torch.softmax(scores, 0)
        want_u = torch.zeros(em.shape[1], em.shape[2], dtype=torch.float64)
        want_p = torch.zeros(em.shape[1] - 1, em.shape[2], em.shape[2], dtype=torch.float64)
        for y, py in zip(ys, p):
            for t in range(n):
                want_u[t, y[t]] += py
            for t in range(n - 1):
                want_p[t, y[t], y[t + 1]] += py
        torch.testing.assert_close(unary[b], want_u, atol=1e-10, rtol=0)
        torch.testing.assert_close(pairwise[b], want_p, atol=1e-10, rtol=0)


def test_argmax_and_topk_match_enumeration():
    em, trans, lengths, start, end = random_crf(seed=1)
    crf = LinearChainCRF(em, trans, lengths, start, end)
    tags, scores = crf.topk(5)
    for b, (ys, table) in enumerate(enumerate_batch(em, trans, lengths, start, end)):
        n = int(lengths[b])
        order = torch.argsort(table, descending=True)
        assert crf.argmax[b, :n].tolist() == list(ys[order[0]])
        assert (crf.argmax[b, n:] == -1).all()
        for r in range(5):
            if r < len(ys):
                assert scores[b, r].item() == pytest.approx(table[order[r]].item(), abs=1e-10)
                assert tags[b, r, :n].tolist() == list(ys[order[r]])
            else:  # a length-1 sentence over 3 labels has only 3 sequences
                assert scores[b, r].item() == -math.inf and (tags[b, r] == -1).all()


def test_score_and_log_prob_match_enumeration():
    em, trans, lengths, start, end = random_crf(seed=2)
    crf = LinearChainCRF(em, trans, lengths, start, end)
    tags = crf.topk(3)[0][:, 0]
    for b, (ys, table) in enumerate(enumerate_batch(em, trans, lengths, start, end)):
        n = int(lengths[b])
        want = brute.chain_score(em[b], trans, start, end, tuple(tags[b, :n].tolist()))
        assert crf.score(tags)[b].item() == pytest.approx(want.item(), abs=1e-10)
        assert crf.log_prob(tags)[b].item() == pytest.approx((want - torch.logsumexp(table, 0)).item(), abs=1e-10)


def test_log_partition_gradient_is_enumerated_gradient():
    em, trans, lengths, start, end = random_crf(seed=3, requires_grad=True)
    w = torch.randn(len(LENGTHS), dtype=torch.float64)
    ours = torch.autograd.grad((LinearChainCRF(em, trans, lengths, start, end).log_partition * w).sum(),
                               (em, trans, start, end))
    brute_z = torch.stack([torch.logsumexp(s, 0) for _, s in enumerate_batch(em, trans, lengths, start, end)])
    want = torch.autograd.grad((brute_z * w).sum(), (em, trans, start, end))
    for a, b in zip(ours, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_marginals_are_differentiable():
    em, trans, lengths, start, end = random_crf(seed=4, requires_grad=True)
    w = torch.randn(em.shape, dtype=torch.float64)
    ours = torch.autograd.grad((LinearChainCRF(em, trans, lengths, start, end).marginals * w).sum(), (em, trans))
    total = 0
    for b, (ys, scores) in enumerate(enumerate_batch(em, trans, lengths, start, end)):
        p = torch.softmax(scores, 0)
        total = total + sum(py * sum(w[b, t, y[t]] for t in range(len(y))) for y, py in zip(ys, p))
    want = torch.autograd.grad(total, (em, trans))
    for a, b in zip(ours, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_expected_score_matches_enumeration():
    em, trans, lengths, start, end = random_crf(seed=5)
    teacher = LinearChainCRF(*random_crf(seed=6)[:3], start=random_crf(seed=6)[3], end=random_crf(seed=6)[4])
    got = LinearChainCRF(em, trans, lengths, start, end).expected_score(teacher.marginals, teacher.pairwise_marginals)
    t_em, t_trans, _, t_start, t_end = random_crf(seed=6)
    for b, n in enumerate(lengths.tolist()):
        ys, t_scores = brute.chain_table(t_em[b], t_trans, t_start, t_end, n)
        p = torch.softmax(t_scores, 0)
        want = sum(py * brute.chain_score(em[b], trans, start, end, y) for y, py in zip(ys, p))
        assert got[b].item() == pytest.approx(want.item(), abs=1e-10)


def test_impossible_transitions_are_exact():
    # BIO-like constraints: label 2 ("I") may only follow 1 ("B") or 2; column 0 is unreachable entirely
    em, trans, lengths, start, end = random_crf(seed=7)
    trans = trans.clone()
    trans[0, 2] = float("-inf")
    trans[:, 0] = float("-inf")
    start = start.clone()
    start[2] = float("-inf")
    crf = LinearChainCRF(em, trans, lengths, start, end)
    for b, (ys, scores) in enumerate(enumerate_batch(em, trans, lengths, start, end)):
        assert crf.log_partition[b].item() == pytest.approx(torch.logsumexp(scores, 0).item(), abs=1e-10)
    assert torch.isfinite(crf.marginals).all() and torch.isfinite(crf.pairwise_marginals).all()
    assert crf.pairwise_marginals[..., 0, 2].abs().max() == 0
    exp = crf.expected_score(crf.marginals, crf.pairwise_marginals)
    assert torch.isfinite(exp).all()


def test_extreme_scores_fall_back_to_log_space_exactly():
    # alpha and transitions both spread by thousands: the exp-space fast path would underflow to 0
    em = torch.tensor([[[0.0, -3000.0], [0.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)
    trans = torch.tensor([[-3000.0, -6000.0], [0.0, 0.0]], dtype=torch.float64)
    crf = LinearChainCRF(em, trans)
    ys, scores = brute.chain_table(em[0], trans, torch.zeros(2, dtype=torch.float64),
                                   torch.zeros(2, dtype=torch.float64), 3)
    assert crf.log_partition.item() == pytest.approx(torch.logsumexp(scores, 0).item(), abs=1e-9)
    assert torch.isfinite(crf.marginals).all()


def test_no_graph_under_no_grad_and_float32_agrees_with_float64():
    em, trans, lengths, start, end = random_crf(seed=8, requires_grad=True)
    with torch.no_grad():
        crf = LinearChainCRF(em, trans, lengths, start, end)
        assert not crf.marginals.requires_grad and not crf.log_partition.requires_grad
    crf32 = LinearChainCRF(em.detach().float(), trans.detach().float(), lengths, start.detach().float(),
                           end.detach().float())
    torch.testing.assert_close(crf32.marginals.double(), crf.marginals, atol=1e-5, rtol=0)
    torch.testing.assert_close(crf32.log_partition.double(), crf.log_partition, atol=1e-5, rtol=0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), scale=st.sampled_from([1.0, 30.0, 1e3, 1e4]),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_property_finite_and_normalised(seed, scale, dtype):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 7, (3,), generator=g)
    n, num_labels = int(lengths.max()), 4
    em = ((torch.rand(3, n, num_labels, generator=g) * 2 - 1) * scale).to(dtype)
    trans = ((torch.rand(num_labels, num_labels, generator=g) * 2 - 1) * scale).to(dtype)
    crf = LinearChainCRF(em, trans, lengths)
    assert torch.isfinite(crf.log_partition).all()
    unary, pairwise = crf.marginals, crf.pairwise_marginals
    assert torch.isfinite(unary).all() and torch.isfinite(pairwise).all()
    mask = torch.arange(n) < lengths.unsqueeze(1)
    # normalised per position, float32 rows sum to 1 at any scale (each entry still carries float32's error)
    tol = 1e-9 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(unary.sum(-1), mask.to(dtype), atol=tol, rtol=0)
    torch.testing.assert_close(pairwise.sum((-1, -2)), mask[:, 1:].to(dtype), atol=tol, rtol=0)
    # the Viterbi path is never better than log Z
    assert (crf.score(crf.argmax) <= crf.log_partition + 1e-6 * n * scale).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(emissions=torch.zeros(2, 3)), "3 dimensions"),
    (dict(transitions=torch.zeros(3, 4)), "transitions must have shape"),
    (dict(lengths=torch.tensor([0, 2])), ">= 1"),
    (dict(lengths=torch.tensor([4, 2])), "<= 3"),
    (dict(lengths=torch.tensor([2])), "shape \\[2\\]"),
    (dict(lengths=torch.tensor([1.0, 2.0])), "integers"),
    (dict(start=torch.zeros(5)), "start must have shape"),
    (dict(emissions=torch.full((2, 3, 4), float("nan"))), "NaN"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
    args = dict(emissions=torch.zeros(2, 3, 4), transitions=torch.zeros(4, 4), lengths=torch.tensor([3, 2]))
    args.update(kwargs)
    with pytest.raises(StructureInputError, match=message):
        LinearChainCRF(**args)


def test_minus_inf_emissions_give_exact_marginals_and_gradients_not_nan():
    # the docstring allows -inf for an impossible label: one such cell once made its whole position NaN
    em, trans, lengths, start, end = random_crf(seed=11)
    em = em.clone()
    em[0, 1, 2] = float("-inf")
    em[2, 0, :2] = float("-inf")
    crf = LinearChainCRF(em, trans, lengths, start, end)
    for b, (ys, scores) in enumerate(enumerate_batch(em, trans, lengths, start, end)):
        p = torch.softmax(scores, 0)
        n = int(lengths[b])
        want = torch.zeros(em.shape[1], em.shape[2], dtype=torch.float64)
        for y, py in zip(ys, p):
            for t in range(n):
                want[t, y[t]] += py
        torch.testing.assert_close(crf.marginals[b], want, atol=1e-10, rtol=0)
    assert crf.marginals[0, 1, 2] == 0 and crf.log_marginals[0, 1, 2] == float("-inf")
    assert torch.isfinite(crf.pairwise_marginals).all() and not torch.isnan(crf.log_marginals).any()
    leaf = em.clone().requires_grad_(True)
    LinearChainCRF(leaf, trans, lengths, start, end).log_partition.sum().backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad[0, 1, 2] == 0


@pytest.mark.parametrize("scale", [1e4, 1e6])
def test_float32_at_large_scale_stays_normalised_and_close_to_float64(scale):
    g = torch.Generator().manual_seed(3)
    lengths = torch.tensor([7, 3, 5])
    em = (torch.rand(3, 7, 5, generator=g, dtype=torch.float64) * 2 - 1) * scale
    trans = (torch.rand(5, 5, generator=g, dtype=torch.float64) * 2 - 1) * scale
    exact = LinearChainCRF(em, trans, lengths)
    crf = LinearChainCRF(em.float(), trans.float(), lengths)
    mask = (torch.arange(7) < lengths.unsqueeze(1)).float()
    assert torch.isfinite(crf.log_partition).all()
    torch.testing.assert_close(crf.marginals.sum(-1), mask, atol=1e-5, rtol=0)
    torch.testing.assert_close(crf.pairwise_marginals.sum((-1, -2)), mask[:, 1:], atol=1e-5, rtol=0)
    assert crf.marginals.max() <= 1 + 1e-6 and crf.pairwise_marginals.max() <= 1 + 1e-6
    torch.testing.assert_close(crf.log_partition.double(), exact.log_partition, rtol=1e-6, atol=0)
