import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from skd_flair.structs import StructureInputError
from skd_flair.structs.eisner import (eisner_argmax, eisner_log_partition, eisner_log_partition_and_marginals,
                                      eisner_marginals)
from tests import brute
from tests.parsing import assert_arc_marginals_normalised, random_tree_scores

LENGTHS = [4, 1, 3, 2, 5]


def random_scores(seed, lengths=LENGTHS, scale=1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    n = max(lengths)
    return (torch.randn(len(lengths), n + 1, n + 1, generator=g, dtype=torch.float64) * scale).to(dtype)


tree_score = brute.tree_score
check_heads = brute.check_heads


def enumerated(scores, lengths, single_root):
    return brute.tree_table(scores, lengths, True, single_root)


@pytest.mark.parametrize("single_root", [True, False])
def test_log_partition_marginals_argmax_match_enumeration(single_root):
    scores = random_scores(0)
    lengths = torch.tensor(LENGTHS)
    log_z = eisner_log_partition(scores, lengths, single_root)
    log_z2, marg = eisner_log_partition_and_marginals(scores, lengths, single_root)
    heads = eisner_argmax(scores, lengths, single_root)
    torch.testing.assert_close(eisner_marginals(scores, lengths, single_root), marg, atol=0, rtol=0)
    for b, (ts, table, want_z, want_m) in enumerate(enumerated(scores, LENGTHS, single_root)):
        assert log_z[b].item() == pytest.approx(want_z.item(), abs=1e-10)
        assert log_z2[b].item() == pytest.approx(want_z.item(), abs=1e-10)
        torch.testing.assert_close(marg[b], want_m, atol=1e-10, rtol=0)
        assert tuple(heads[b, 1:LENGTHS[b] + 1].tolist()) == ts[int(table.argmax())]
    check_heads(heads, LENGTHS, single_root)


@pytest.mark.parametrize("single_root", [True, False])
def test_log_partition_gradient_is_enumerated_gradient(single_root):
    scores = random_scores(1).requires_grad_(True)
    w = torch.randn(len(LENGTHS), dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    (ours,) = torch.autograd.grad((eisner_log_partition(scores, torch.tensor(LENGTHS), single_root) * w).sum(),
                                  scores)
    want_z = torch.stack([z for _, _, z, _ in enumerated(scores, LENGTHS, single_root)])
    (want,) = torch.autograd.grad((want_z * w).sum(), scores)
    torch.testing.assert_close(ours, want, atol=1e-10, rtol=0)


def test_multi_root_counts_and_single_root_counts():
    # with zero scores Z counts the trees: projective trees over n words (Catalan-like numbers)
    for n in range(1, 6):
        zeros = torch.zeros(1, n + 1, n + 1, dtype=torch.float64)
        for single_root in (True, False):
            count = len(brute.trees(n, True, single_root))
            assert math.exp(eisner_log_partition(zeros, None, single_root).item()) == pytest.approx(count, rel=1e-12)


def test_impossible_entries_are_ignored_whatever_their_value():
    scores = random_scores(2)
    lengths = torch.tensor(LENGTHS)
    size = scores.shape[1]
    junk = scores.clone()
    junk[:, :, 0] = 1e4  # arcs into the root
    junk.diagonal(0, 1, 2).fill_(float("-inf"))  # self-loops
    for b, n in enumerate(LENGTHS):  # padding
        junk[b, n + 1:, :] = 5e3
        junk[b, :, n + 1:] = float("-inf")
    for single_root in (True, False):
        want_z, want_m = eisner_log_partition_and_marginals(scores, lengths, single_root)
        got_z, got_m = eisner_log_partition_and_marginals(junk, lengths, single_root)
        torch.testing.assert_close(got_z, want_z, atol=1e-12, rtol=0)
        torch.testing.assert_close(got_m, want_m, atol=1e-12, rtol=0)
        assert torch.equal(eisner_argmax(junk, lengths, single_root), eisner_argmax(scores, lengths, single_root))
        idx = torch.arange(size)
        possible = (idx.view(1, -1, 1) <= lengths.view(-1, 1, 1)) & (idx.view(1, 1, -1) <= lengths.view(-1, 1, 1))
        possible &= (idx.view(1, 1, -1) >= 1) & (idx.view(1, -1, 1) != idx.view(1, 1, -1))
        assert (got_m[~possible] == 0).all()


def test_neg_inf_arcs_are_exactly_forbidden():
    scores = random_scores(3)
    scores[0, 0, 1] = float("-inf")  # word 1 of item 0 may not hang from the root
    scores[4, 2, 3] = float("-inf")
    scores[4, 0, :] = float("-inf")
    scores[4, 0, 4] = 0.5  # item 4 must take word 4 as the root's only child
    lengths = torch.tensor(LENGTHS)
    for single_root in (True, False):
        log_z, marg = eisner_log_partition_and_marginals(scores, lengths, single_root)
        heads = eisner_argmax(scores, lengths, single_root)
        for b, (ts, table, want_z, want_m) in enumerate(enumerated(scores, LENGTHS, single_root)):
            assert log_z[b].item() == pytest.approx(want_z.item(), abs=1e-10)
            torch.testing.assert_close(marg[b], want_m, atol=1e-10, rtol=0)
            assert tuple(heads[b, 1:LENGTHS[b] + 1].tolist()) == ts[int(table.argmax())]
        assert marg[0, 0, 1] == 0 and marg[4, 2, 3] == 0 and marg[4, 0, 4] == pytest.approx(1.0, abs=1e-12)


def test_no_graph_under_no_grad_and_from_marginals():
    scores = random_scores(4).requires_grad_(True)
    lengths = torch.tensor(LENGTHS)
    assert not eisner_marginals(scores, lengths).requires_grad  # grad enabled, still no graph
    with torch.no_grad():
        assert not eisner_log_partition(scores, lengths).requires_grad
        assert not eisner_marginals(scores, lengths).requires_grad
    assert eisner_log_partition(scores, lengths).requires_grad


def test_float32_agrees_with_float64_and_other_dtypes_run_in_float32():
    scores = random_scores(5)
    lengths = torch.tensor(LENGTHS)
    z64, m64 = eisner_log_partition_and_marginals(scores, lengths)
    z32, m32 = eisner_log_partition_and_marginals(scores.float(), lengths)
    assert z32.dtype == torch.float32 and m32.dtype == torch.float32
    torch.testing.assert_close(z32.double(), z64, atol=1e-5, rtol=0)
    torch.testing.assert_close(m32.double(), m64, atol=1e-5, rtol=0)
    half = scores.to(torch.bfloat16).requires_grad_(True)
    z = eisner_log_partition(half, lengths)
    assert z.dtype == torch.float32
    z.sum().backward()
    assert half.grad.dtype == torch.bfloat16 and torch.isfinite(half.grad.float()).all()


def test_gradient_matches_marginals_and_scales_with_output_gradient():
    scores = random_scores(6, scale=3.0).requires_grad_(True)
    lengths = torch.tensor(LENGTHS)
    w = torch.tensor([0.0, -2.0, 1.0, 3.5, 0.25], dtype=torch.float64)
    (grad,) = torch.autograd.grad((eisner_log_partition(scores, lengths, False) * w).sum(), scores)
    torch.testing.assert_close(grad, eisner_marginals(scores, lengths, False) * w.view(-1, 1, 1), atol=1e-12, rtol=0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), scale=st.sampled_from([1.0, 30.0, 1e3, 1e4]),
       dtype=st.sampled_from([torch.float32, torch.float64]), single_root=st.booleans())
def test_property_finite_normalised_and_well_formed(seed, scale, dtype, single_root):
    lengths, scores = random_tree_scores(seed, scale, dtype)
    size = scores.shape[-1]
    log_z, marg = eisner_log_partition_and_marginals(scores, lengths, single_root)
    assert torch.isfinite(log_z).all() and torch.isfinite(marg).all()
    assert (marg >= 0).all() and (marg <= 1 + 1e-5).all()
    assert_arc_marginals_normalised(marg, lengths, single_root)
    heads = eisner_argmax(scores, lengths, single_root)
    check_heads(heads, lengths.tolist(), single_root)
    # the best tree lies between log Z - log(number of trees) and log Z
    best = torch.stack([tree_score(scores[b].double(), heads[b, 1:n + 1].tolist())
                        for b, n in enumerate(lengths.tolist())])
    count = eisner_log_partition(torch.zeros(3, size, size, dtype=torch.float64), lengths, single_root)
    slack = 1e-9 * scale * size if dtype == torch.float64 else 1e-6 * scale * size
    assert (best <= log_z.double() + slack).all()
    assert (best >= log_z.double() - count - slack).all()


@pytest.mark.parametrize("scores, lengths, message", [
    (torch.zeros(3, 3), None, "3 dimensions"),
    (torch.zeros(2, 3, 4), None, "arc_scores must have shape"),
    (torch.zeros(2, 1, 1), None, "N >= 1"),
    (torch.zeros(0, 3, 3), None, "B >= 1"),
    (torch.zeros(2, 3, 3, dtype=torch.long), None, "floating point"),
    (torch.full((2, 3, 3), float("nan")), None, "NaN"),
    (torch.full((2, 3, 3), float("inf")), None, "NaN or \\+inf"),
    (torch.zeros(2, 3, 3), torch.tensor([0, 2]), ">= 1"),
    (torch.zeros(2, 3, 3), torch.tensor([3, 2]), "<= 2"),
    (torch.zeros(2, 3, 3), torch.tensor([2]), "shape \\[2\\]"),
    (torch.zeros(2, 3, 3), torch.tensor([2.0, 1.0]), "integers"),
])
def test_bad_input_is_a_clear_error(scores, lengths, message):
    for fn in (eisner_log_partition, eisner_marginals, eisner_argmax):
        with pytest.raises(StructureInputError, match=message):
            fn(scores, lengths)
