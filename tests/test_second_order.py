import pytest
import torch
from hypothesis import given, settings, strategies as st

from skd_flair.structs import StructureInputError
from skd_flair.structs.eisner import eisner_argmax, eisner_log_partition, eisner_log_partition_and_marginals
from skd_flair.structs.second_order import SiblingTree, sibling_mask
from tests import brute
from tests.parsing import assert_arc_marginals_normalised, random_tree_scores

LENGTHS = [4, 1, 3, 2, 5]


def random_scores(seed, lengths=LENGTHS, scale=1.0, dtype=torch.float64, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    size = max(lengths) + 1
    arcs = (torch.randn(len(lengths), size, size, generator=g, dtype=torch.float64) * scale).to(dtype)
    sibs = (torch.randn(len(lengths), size, size, size, generator=g, dtype=torch.float64) * scale).to(dtype)
    return arcs.requires_grad_(requires_grad), sibs.requires_grad_(requires_grad)


def sibling_parts(heads):
    """(h, s, d) for every adjacent-sibling part of a tree (heads of words 1..n): per head and side, the
    dependents from the closest outwards, the closest one with s == h."""
    full = (None,) + tuple(heads)
    n = len(heads)
    parts = []
    for h in range(n + 1):
        right = [d for d in range(h + 1, n + 1) if full[d] == h]
        left = [d for d in range(h - 1, 0, -1) if full[d] == h]
        for side in (right, left):
            inner = h
            for d in side:
                parts.append((h, inner, d))
                inner = d
    return parts


def tree_score(arcs, sibs, heads):
    s = sum(arcs[h, d] for d, h in enumerate(heads, start=1))
    return s + sum(sibs[h, i, d] for h, i, d in sibling_parts(heads))


def enumerated(arcs, sibs, lengths, single_root):
    """Per item: (trees, scores [T], log Z, arc marginals, sibling marginals) by enumeration."""
    out = []
    for b, n in enumerate(lengths):
        ts = brute.trees(n, True, single_root)
        table = torch.stack([tree_score(arcs[b], sibs[b], t) for t in ts])
        p = torch.softmax(table, 0)
        marg = torch.zeros(arcs.shape[1:], dtype=arcs.dtype)
        sib_marg = torch.zeros(sibs.shape[1:], dtype=sibs.dtype)
        for t, pt in zip(ts, p):
            for d, h in enumerate(t, start=1):
                marg[h, d] += pt
            for h, i, d in sibling_parts(t):
                sib_marg[h, i, d] += pt
        out.append((ts, table, torch.logsumexp(table, 0), marg, sib_marg))
    return out


check_heads = brute.check_heads


@pytest.mark.parametrize("single_root", [True, False])
def test_everything_matches_enumeration(single_root):
    arcs, sibs = random_scores(0)
    tree = SiblingTree(arcs, sibs, torch.tensor(LENGTHS), single_root)
    log_z, marg, sib_marg, heads = tree.log_partition, tree.marginals, tree.sibling_marginals, tree.argmax
    for b, (ts, table, want_z, want_m, want_s) in enumerate(enumerated(arcs, sibs, LENGTHS, single_root)):
        assert log_z[b].item() == pytest.approx(want_z.item(), abs=1e-10)
        torch.testing.assert_close(marg[b], want_m, atol=1e-10, rtol=0)
        torch.testing.assert_close(sib_marg[b], want_s, atol=1e-10, rtol=0)
        assert tuple(heads[b, 1:LENGTHS[b] + 1].tolist()) == ts[int(table.argmax())]
    check_heads(heads, LENGTHS, single_root)
    # a fresh object computing log Z alone (no marginals cached) agrees
    torch.testing.assert_close(SiblingTree(arcs, sibs, torch.tensor(LENGTHS), single_root).log_partition, log_z,
                               atol=1e-12, rtol=0)


def test_score_and_sibling_parts_match_the_brute_force_scorer():
    arcs, sibs = random_scores(1)
    tree = SiblingTree(arcs, sibs, torch.tensor(LENGTHS))
    size = arcs.shape[1]
    for b, n in enumerate(LENGTHS):
        for t in brute.trees(n, True, False):
            heads = torch.full((len(LENGTHS), size), -1, dtype=torch.long)
            heads[:, 1:] = 0
            heads[b, 1:n + 1] = torch.tensor(t)
            got = tree.score(heads)[b]
            assert got.item() == pytest.approx(tree_score(arcs[b], sibs[b], t).item(), abs=1e-12)
            inner = tree.sibling_parts(heads)[b]
            want = {d: i for _, i, d in sibling_parts(t)}
            assert inner[1:n + 1].tolist() == [want[d] for d in range(1, n + 1)]
            assert inner[0] == -1 and (inner[n + 1:] == -1).all()
    log_prob = tree.log_prob(tree.argmax)
    for b, (_, table, want_z, _, _) in enumerate(enumerated(arcs, sibs, LENGTHS, True)):
        assert log_prob[b].item() == pytest.approx((table.max() - want_z).item(), abs=1e-10)


@pytest.mark.parametrize("single_root", [True, False])
def test_log_partition_gradient_is_enumerated_gradient(single_root):
    arcs, sibs = random_scores(2, requires_grad=True)
    w = torch.randn(len(LENGTHS), dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    ours = torch.autograd.grad((SiblingTree(arcs, sibs, torch.tensor(LENGTHS), single_root).log_partition * w).sum(),
                               (arcs, sibs))
    want_z = torch.stack([e[2] for e in enumerated(arcs, sibs, LENGTHS, single_root)])
    want = torch.autograd.grad((want_z * w).sum(), (arcs, sibs))
    for a, b in zip(ours, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_expected_score_matches_enumeration():
    arcs, sibs = random_scores(3, requires_grad=True)
    t_arcs, t_sibs = random_scores(4)
    teacher = SiblingTree(t_arcs, t_sibs, torch.tensor(LENGTHS))
    student = SiblingTree(arcs, sibs, torch.tensor(LENGTHS))
    got = student.expected_score(teacher.marginals, teacher.sibling_marginals)
    want = []
    for b, (ts, table, _, _, _) in enumerate(enumerated(t_arcs, t_sibs, LENGTHS, True)):
        p = torch.softmax(table, 0)
        want.append(sum(pt * tree_score(arcs[b], sibs[b], t) for t, pt in zip(ts, p)))
    want = torch.stack(want)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    # the structural KD loss log Z_s - E_t[s_s] and its gradient equal the enumerated cross-entropy's
    loss = (student.log_partition - got).sum()
    ce = -sum((torch.softmax(tt, 0) * (torch.stack([tree_score(arcs[b], sibs[b], t) for t in ts]) - z)).sum()
              for b, ((ts, tt, _, _, _), (_, _, z, _, _)) in enumerate(
                  zip(enumerated(t_arcs, t_sibs, LENGTHS, True), enumerated(arcs, sibs, LENGTHS, True))))
    assert loss.item() == pytest.approx(ce.item(), abs=1e-10)
    for a, b in zip(torch.autograd.grad(loss, (arcs, sibs)), torch.autograd.grad(ce, (arcs, sibs))):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    # arc part only when no sibling weights are given
    arc_only = student.expected_score(teacher.marginals)
    want_arc = (teacher.marginals * arcs).sum((1, 2))
    torch.testing.assert_close(arc_only, want_arc, atol=1e-12, rtol=0)


@pytest.mark.parametrize("single_root", [True, False])
def test_zero_or_no_sibling_scores_is_first_order_eisner(single_root):
    arcs, _ = random_scores(5)
    lengths = torch.tensor(LENGTHS)
    size = arcs.shape[1]
    zero = SiblingTree(arcs, torch.zeros(len(LENGTHS), size, size, size, dtype=torch.float64), lengths, single_root)
    none = SiblingTree(arcs, None, lengths, single_root)
    z, m = eisner_log_partition_and_marginals(arcs, lengths, single_root)
    for tree in (zero, none):
        torch.testing.assert_close(tree.log_partition, z, atol=1e-12, rtol=0)
        torch.testing.assert_close(tree.marginals, m, atol=1e-12, rtol=0)
        assert torch.equal(tree.argmax, eisner_argmax(arcs, lengths, single_root))
        # every arc has exactly one inner sibling
        torch.testing.assert_close(tree.sibling_marginals.sum(2), m, atol=1e-12, rtol=0)
    leaf = arcs.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(SiblingTree(leaf, None, lengths, single_root).log_partition.sum(), leaf)
    (g2,) = torch.autograd.grad(eisner_log_partition(leaf, lengths, single_root).sum(), leaf)
    torch.testing.assert_close(g1, g2, atol=0, rtol=0)


def test_impossible_entries_are_ignored_whatever_their_value():
    arcs, sibs = random_scores(6)
    lengths = torch.tensor(LENGTHS)
    size = arcs.shape[1]
    possible = sibling_mask(lengths, size)
    junk_sibs = torch.where(possible, sibs, torch.full_like(sibs, 1e4))
    junk_sibs[:, 0, 2, 1] = float("-inf")  # s not between h and d
    junk_arcs = arcs.clone()
    junk_arcs[:, :, 0] = 1e4
    junk_arcs.diagonal(0, 1, 2).fill_(float("-inf"))
    for b, n in enumerate(LENGTHS):
        junk_arcs[b, n + 1:, :] = -1e4
    for single_root in (True, False):
        clean = SiblingTree(arcs, sibs, lengths, single_root)
        junk = SiblingTree(junk_arcs, junk_sibs, lengths, single_root)
        torch.testing.assert_close(junk.log_partition, clean.log_partition, atol=1e-12, rtol=0)
        torch.testing.assert_close(junk.marginals, clean.marginals, atol=1e-12, rtol=0)
        torch.testing.assert_close(junk.sibling_marginals, clean.sibling_marginals, atol=1e-12, rtol=0)
        assert torch.equal(junk.argmax, clean.argmax)
        assert (junk.sibling_marginals[~possible] == 0).all()


def test_neg_inf_sibling_scores_are_exactly_forbidden():
    arcs, sibs = random_scores(7)
    sibs[4, 0, 0, :] = float("-inf")  # item 4: every first child of the root is forbidden but word 3
    sibs[4, 0, 0, 3] = 0.0
    sibs[0, 2, 2, 1] = float("-inf")  # item 0: word 1 may not be word 2's closest left dependent
    sibs[0, 4, 3, :] = float("-inf")  # nor may anything follow word 3 on word 4's side
    lengths = torch.tensor(LENGTHS)
    for single_root in (True, False):
        tree = SiblingTree(arcs, sibs, lengths, single_root)
        for b, (ts, table, want_z, want_m, want_s) in enumerate(enumerated(arcs, sibs, LENGTHS, single_root)):
            assert tree.log_partition[b].item() == pytest.approx(want_z.item(), abs=1e-10)
            torch.testing.assert_close(tree.marginals[b], want_m, atol=1e-10, rtol=0)
            torch.testing.assert_close(tree.sibling_marginals[b], want_s, atol=1e-10, rtol=0)
            assert tuple(tree.argmax[b, 1:LENGTHS[b] + 1].tolist()) == ts[int(table.argmax())]
        assert tree.sibling_marginals[0, 2, 2, 1] == 0 and tree.sibling_marginals[4, 0, 0, 3] > 0.99


def test_no_graph_for_marginals_and_gradient_flows_through_log_partition():
    arcs, sibs = random_scores(8, requires_grad=True)
    tree = SiblingTree(arcs, sibs, torch.tensor(LENGTHS))
    assert not tree.marginals.requires_grad and not tree.sibling_marginals.requires_grad
    assert tree.log_partition.requires_grad
    with torch.no_grad():
        assert not SiblingTree(arcs, sibs, torch.tensor(LENGTHS)).log_partition.requires_grad
    g_arc, g_sib = torch.autograd.grad(tree.log_partition.sum(), (arcs, sibs))
    torch.testing.assert_close(g_arc, tree.marginals, atol=1e-12, rtol=0)
    torch.testing.assert_close(g_sib, tree.sibling_marginals, atol=1e-12, rtol=0)


def test_float32_agrees_with_float64_and_strided_inputs_work():
    arcs, sibs = random_scores(9)
    lengths = torch.tensor(LENGTHS)
    t64 = SiblingTree(arcs, sibs, lengths)
    t32 = SiblingTree(arcs.float(), sibs.float(), lengths)
    torch.testing.assert_close(t32.log_partition.double(), t64.log_partition, atol=1e-5, rtol=0)
    torch.testing.assert_close(t32.marginals.double(), t64.marginals, atol=1e-5, rtol=0)
    torch.testing.assert_close(t32.sibling_marginals.double(), t64.sibling_marginals, atol=1e-5, rtol=0)
    # non-contiguous inputs (e.g. a [b, d, s, h] tensor permuted into place) give the same answer
    odd = sibs.permute(0, 3, 2, 1).contiguous().permute(0, 3, 2, 1)
    torch.testing.assert_close(SiblingTree(arcs.transpose(1, 2).contiguous().transpose(1, 2), odd, lengths)
                               .sibling_marginals, t64.sibling_marginals, atol=1e-12, rtol=0)
    # views into larger tensors (storage offsets, padded strides) and broadcast (stride 0) scores
    b, size = arcs.shape[:2]
    big = torch.randn(b + 1, size + 1, size + 2, size + 3, dtype=torch.float64)
    big[1:, 1:, 2:, 3:] = sibs
    torch.testing.assert_close(SiblingTree(arcs, big[1:, 1:, 2:, 3:], lengths).sibling_marginals,
                               t64.sibling_marginals, atol=1e-12, rtol=0)
    flat = SiblingTree(arcs, torch.zeros(1, size, size, size, dtype=torch.float64).expand(b, -1, -1, -1), lengths)
    torch.testing.assert_close(flat.marginals, SiblingTree(arcs, None, lengths).marginals, atol=1e-12, rtol=0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), scale=st.sampled_from([1.0, 30.0, 1e3, 1e4]),
       dtype=st.sampled_from([torch.float32, torch.float64]), single_root=st.booleans())
def test_property_finite_normalised_and_well_formed(seed, scale, dtype, single_root):
    lengths, arcs, sibs = random_tree_scores(seed, scale, dtype, sibling=True)
    size = arcs.shape[-1]
    tree = SiblingTree(arcs, sibs, lengths, single_root)
    log_z, marg, sib_marg = tree.log_partition, tree.marginals, tree.sibling_marginals
    assert torch.isfinite(log_z).all() and torch.isfinite(marg).all() and torch.isfinite(sib_marg).all()
    assert (marg >= 0).all() and (sib_marg >= 0).all()
    tol = assert_arc_marginals_normalised(marg, lengths, single_root)
    torch.testing.assert_close(sib_marg.sum(2), marg, atol=tol, rtol=0)
    heads = tree.argmax
    check_heads(heads, lengths.tolist(), single_root)
    best = SiblingTree(arcs.double(), sibs.double(), lengths, single_root).score(heads)
    count = eisner_log_partition(torch.zeros(3, size, size, dtype=torch.float64), lengths, single_root)
    slack = (1e-9 if dtype == torch.float64 else 1e-6) * scale * size * 3
    assert (best <= log_z.double() + slack).all()
    assert (best >= log_z.double() - count - slack).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(sib_scores=torch.zeros(2, 3, 3)), "4 dimensions"),
    (dict(sib_scores=torch.zeros(2, 3, 3, 4)), "sib_scores must have shape"),
    (dict(sib_scores=torch.full((2, 3, 3, 3), float("nan"))), "NaN"),
    (dict(sib_scores=torch.zeros(2, 3, 3, 3, dtype=torch.int32)), "floating point"),
    (dict(arc_scores=torch.zeros(2, 3, 4)), "arc_scores must have shape"),
    (dict(lengths=torch.tensor([0, 2])), ">= 1"),
    (dict(lengths=torch.tensor([3, 2])), "<= 2"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
    args = dict(arc_scores=torch.zeros(2, 3, 3), sib_scores=torch.zeros(2, 3, 3, 3), lengths=torch.tensor([2, 1]))
    args.update(kwargs)
    with pytest.raises(StructureInputError, match=message):
        SiblingTree(**args)


def test_bad_weights_and_heads_are_clear_errors():
    arcs, sibs = random_scores(10)
    tree = SiblingTree(arcs, sibs, torch.tensor(LENGTHS))
    with pytest.raises(StructureInputError, match="arc_marginals must have shape"):
        tree.expected_score(torch.zeros(2, 2, 2))
    with pytest.raises(StructureInputError, match="sib_marginals must have shape"):
        tree.expected_score(tree.marginals, torch.zeros(2, 2, 2, 2))
    bad = tree.argmax.clone()
    bad[0, 1] = 99
    with pytest.raises(StructureInputError, match="heads must be in"):
        tree.score(bad)
