import pytest
import torch
from hypothesis import given, settings, strategies as st

from skd_flair.structs import DependencyTree, StructureInputError
from skd_flair.structs.dependency import _laplacian_marginals, _logspace_marginals, arc_mask
from tests import brute

LENGTHS = [4, 1, 3, 2]


def random_scores(seed, lengths=LENGTHS, scale=1.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    n = max(lengths)
    return (torch.randn(len(lengths), n + 1, n + 1, generator=g, dtype=torch.float64) * scale).to(dtype)


tree_score = brute.tree_score


def enumerated(scores, lengths, projective, single_root):
    return brute.tree_table(scores, lengths, projective, single_root)


@pytest.mark.parametrize("single_root", [True, False])
def test_nonprojective_matches_enumeration(single_root):
    scores = random_scores(0)
    tree = DependencyTree(scores, torch.tensor(LENGTHS), projective=False, single_root=single_root)
    for b, (ts, table, log_z, marg) in enumerate(enumerated(scores, LENGTHS, False, single_root)):
        assert tree.log_partition[b].item() == pytest.approx(log_z.item(), abs=1e-10)
        torch.testing.assert_close(tree.marginals[b], marg, atol=1e-10, rtol=0)
        assert tuple(tree.argmax[b, 1:LENGTHS[b] + 1].tolist()) == ts[int(table.argmax())]
        assert tree.argmax[b, 0] == -1 and (tree.argmax[b, LENGTHS[b] + 1:] == -1).all()


@pytest.mark.parametrize("single_root", [True, False])
def test_logspace_fallback_matches_enumeration(single_root):
    scores = random_scores(1)
    lengths = torch.tensor(LENGTHS)
    valid = arc_mask(lengths, scores.shape[1])
    log_z, marg = _logspace_marginals(scores, valid, lengths, single_root)
    for b, (_, _, want_z, want_m) in enumerate(enumerated(scores, LENGTHS, False, single_root)):
        assert log_z[b].item() == pytest.approx(want_z.item(), abs=1e-10)
        torch.testing.assert_close(marg[b], want_m, atol=1e-10, rtol=0)


@pytest.mark.parametrize("single_root", [True, False])
def test_ill_conditioned_laplacian_falls_back_and_stays_exact(single_root):
    # words 1 and 2 prefer each other by thousands: every tree must pay for breaking that 2-cycle, so the
    # max-shifted Laplacian is singular to working precision
    s = torch.full((1, 4, 4), -2000.0, dtype=torch.float64)
    s[0, 1, 2] = s[0, 2, 1] = 0.0
    s[0, 0, 3] = s[0, 3, 1] = -1000.0
    s[0, 0, 1] = -1500.0
    lengths = torch.tensor([3])
    _, _, trusted = _laplacian_marginals(s, arc_mask(lengths, 4), lengths, single_root)
    assert not trusted.all()
    tree = DependencyTree(s, lengths, single_root=single_root)
    (ts, table, log_z, marg), = enumerated(s, [3], False, single_root)
    assert tree.log_partition.item() == pytest.approx(log_z.item(), abs=1e-8)
    torch.testing.assert_close(tree.marginals[0], marg, atol=1e-8, rtol=0)


@pytest.mark.parametrize("single_root", [True, False])
def test_log_partition_gradient_is_enumerated_gradient(single_root):
    scores = random_scores(2).requires_grad_(True)
    w = torch.randn(len(LENGTHS), dtype=torch.float64)
    (ours,) = torch.autograd.grad((DependencyTree(scores, torch.tensor(LENGTHS), single_root=single_root)
                                   .log_partition * w).sum(), scores)
    want_z = torch.stack([torch.logsumexp(torch.stack([tree_score(scores[b], t) for t in
                                                       brute.trees(n, False, single_root)]), 0)
                          for b, n in enumerate(LENGTHS)])
    (want,) = torch.autograd.grad((want_z * w).sum(), scores)
    torch.testing.assert_close(ours, want, atol=1e-10, rtol=0)


def test_score_log_prob_and_expected_score():
    scores, other = random_scores(3), random_scores(4)
    lengths = torch.tensor(LENGTHS)
    tree = DependencyTree(scores, lengths)
    q = DependencyTree(other, lengths).marginals
    heads = tree.argmax
    for b, (ts, table, log_z, _) in enumerate(enumerated(scores, LENGTHS, False, True)):
        best = ts[int(table.argmax())]
        assert tree.score(heads)[b].item() == pytest.approx(tree_score(scores[b], best).item(), abs=1e-10)
        assert tree.log_prob(heads)[b].item() == pytest.approx((table.max() - log_z).item(), abs=1e-10)
    for b, (ts, _, _, _) in enumerate(enumerated(other, LENGTHS, False, True)):
        p = torch.softmax(torch.stack([tree_score(other[b], t) for t in ts]), 0)
        want = sum(pt * tree_score(scores[b], t) for t, pt in zip(ts, p))
        assert tree.expected_score(q)[b].item() == pytest.approx(want.item(), abs=1e-10)


def test_float32_agrees_with_float64():
    scores = random_scores(5)
    tree32 = DependencyTree(scores.float(), torch.tensor(LENGTHS))
    assert tree32.marginals.dtype == torch.float32 and tree32.log_partition.dtype == torch.float32
    torch.testing.assert_close(tree32.marginals.double(), DependencyTree(scores, torch.tensor(LENGTHS)).marginals,
                               atol=1e-6, rtol=0)


def test_no_graph_under_no_grad():
    scores = random_scores(6).requires_grad_(True)
    with torch.no_grad():
        tree = DependencyTree(scores, torch.tensor(LENGTHS))
        assert not tree.marginals.requires_grad and not tree.log_partition.requires_grad


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), scale=st.sampled_from([1.0, 100.0, 1e4]), single_root=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_property_finite_normalised_well_formed(seed, scale, single_root, dtype):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 9, (3,), generator=g)
    n = int(lengths.max())
    scores = ((torch.rand(3, n + 1, n + 1, generator=g, dtype=torch.float64) * 2 - 1) * scale).to(dtype)
    tree = DependencyTree(scores, lengths, single_root=single_root)
    assert torch.isfinite(tree.log_partition).all() and torch.isfinite(tree.marginals).all()
    tol = 1e-8 if dtype == torch.float64 else 2e-4
    word = (torch.arange(n + 1) <= lengths.unsqueeze(1)) & (torch.arange(n + 1) > 0)
    torch.testing.assert_close(tree.marginals.sum(1), word.to(dtype), atol=tol, rtol=0)
    if single_root:
        torch.testing.assert_close(tree.marginals[:, 0].sum(1), torch.ones(3, dtype=dtype), atol=tol, rtol=0)
    for b, length in enumerate(lengths.tolist()):
        heads = tuple(tree.argmax[b, 1:length + 1].tolist())
        assert brute.is_tree(heads) and all(0 <= h <= length for h in heads)
        if single_root:
            assert sum(h == 0 for h in heads) == 1
    # the decoded tree scores no more than log Z
    assert (tree.score(tree.argmax) <= tree.log_partition + (1e-9 if dtype == torch.float64 else 1e-5) * n * scale).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(arc_scores=torch.zeros(2, 3)), "3 dimensions"),
    (dict(arc_scores=torch.zeros(2, 3, 4)), "arc_scores must have shape"),
    (dict(lengths=torch.tensor([0, 2])), ">= 1"),
    (dict(lengths=torch.tensor([3, 2])), "<= 2"),
    (dict(arc_scores=torch.full((2, 3, 3), float("nan"))), "NaN"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
    args = dict(arc_scores=torch.zeros(2, 3, 3), lengths=torch.tensor([2, 1]))
    args.update(kwargs)
    with pytest.raises(StructureInputError, match=message):
        DependencyTree(**args)


@pytest.mark.parametrize("projective, second_order", [(False, False), (True, False), (True, True)])
def test_no_valid_tree_is_a_clear_error_not_a_tree_through_an_impossible_arc(projective, second_order):
    from skd_flair.structs import SiblingTree

    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 4, 4, generator=g, dtype=torch.float64)
    scores[1, 0, :] = float("-inf")  # item 1: no word may attach to the root, so no tree exists
    if second_order:
        tree = SiblingTree(scores, torch.randn(2, 4, 4, 4, generator=g, dtype=torch.float64))
    else:
        tree = DependencyTree(scores, projective=projective)
    for what in ("log_partition", "marginals", "argmax"):
        with pytest.raises(StructureInputError, match=r"batch item\(s\) \[1\] have no valid tree"):
            getattr(tree, what)
    fine = SiblingTree(scores[:1]) if second_order else DependencyTree(scores[:1], projective=projective)
    assert torch.isfinite(fine.log_partition).all() and (fine.argmax[0, 1:] >= 0).all()


@pytest.mark.parametrize("projective", [False, True])
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_precision_scores_give_float32_results_like_every_structure(projective, half):
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(3, 6, 6, generator=g).to(half)
    tree = DependencyTree(scores, torch.tensor([5, 3, 1]), projective=projective)
    ref = DependencyTree(scores.float(), torch.tensor([5, 3, 1]), projective=projective)
    assert tree.log_partition.dtype == tree.marginals.dtype == torch.float32
    torch.testing.assert_close(tree.marginals, ref.marginals, atol=1e-6, rtol=0)
    assert torch.equal(tree.argmax, ref.argmax)
