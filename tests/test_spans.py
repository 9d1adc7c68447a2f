import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from skd_flair.structs import StructureInputError
from skd_flair.structs.spans import LabelledSpans
from tests import brute

LENGTHS = [5, 1, 3, 2, 4]
NAMES = ["PER", "LOC"]


def random_scores(seed=0, lengths=LENGTHS, num_types=2, scale=1.0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    n = max(lengths)
    s = torch.randn(len(lengths), n, n, num_types, generator=g, dtype=torch.float64) * scale
    return s.requires_grad_(requires_grad), torch.tensor(lengths)


def set_score(s, spans):
    return sum((s[i, j, e] for i, j, e in spans), s.new_zeros(()))


def enumerate_batch(scores, lengths, max_width):
    """Per batch item: (every span set, their scores) by brute force."""
    out = []
    for b, n in enumerate(lengths.tolist()):
        sets = brute.span_sets(n, scores.shape[-1], max_width or n)
        out.append((sets, torch.stack([set_score(scores[b], y) for y in sets])))
    return out


WIDTHS = [None, 1, 2, 3]


@pytest.mark.parametrize("max_width", WIDTHS)
@pytest.mark.parametrize("num_types", [1, 2])
def test_log_partition_and_marginals_match_enumeration(max_width, num_types):
    scores, lengths = random_scores(seed=num_types, num_types=num_types)
    spans = LabelledSpans(scores, lengths, max_width)
    names = NAMES[:num_types]
    tags = LabelledSpans.bioes_tags(names)
    log_z, marginals, tokens = spans.log_partition, spans.marginals, spans.token_marginals
    n_max = scores.shape[1]
    for b, (sets, table) in enumerate(enumerate_batch(scores, lengths, max_width)):
        n = int(lengths[b])
        assert log_z[b].item() == pytest.approx(torch.logsumexp(table, 0).item(), abs=1e-10)
        p = torch.softmax(table, 0)
        want_spans = torch.zeros(n_max, n_max, num_types, dtype=torch.float64)
        want_tokens = torch.zeros(n_max, len(tags), dtype=torch.float64)
        for y, py in zip(sets, p):
            for i, j, e in y:
                want_spans[i, j, e] += py
            for m, tag in enumerate(brute.bioes(y, n, names)):
                want_tokens[m, tags.index(tag)] += py
        torch.testing.assert_close(marginals[b], want_spans, atol=1e-10, rtol=0)
        torch.testing.assert_close(tokens[b], want_tokens, atol=1e-10, rtol=0)


def test_bioes_tag_order():
    assert LabelledSpans.bioes_tags(["PER", "LOC"]) == ["O", "B-PER", "I-PER", "E-PER", "S-PER",
                                                        "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


@pytest.mark.parametrize("max_width", WIDTHS)
def test_argmax_decode_best_bioes_match_enumeration(max_width):
    scores, lengths = random_scores(seed=10, scale=2.0)
    scores = scores - 1.0  # a mix of spans and O tokens in the best sets
    spans = LabelledSpans(scores, lengths, max_width)
    tags = LabelledSpans.bioes_tags(NAMES)
    decoded, argmax, best = spans.decode(), spans.argmax, spans.best_bioes
    for b, (sets, table) in enumerate(enumerate_batch(scores, lengths, max_width)):
        n = int(lengths[b])
        want = sorted(sets[int(table.argmax())])
        assert decoded[b] == want
        indicator = torch.zeros_like(scores[b])
        for i, j, e in want:
            indicator[i, j, e] = 1
        assert torch.equal(argmax[b], indicator)
        assert [tags[t] for t in best[b, :n].tolist()] == brute.bioes(want, n, NAMES)
        assert (best[b, n:] == -1).all()
        assert spans.expected_score(argmax)[b].item() == pytest.approx(table.max().item(), abs=1e-10)


@pytest.mark.parametrize("max_width", [None, 2])
def test_log_partition_gradient_is_enumerated_gradient(max_width):
    scores, lengths = random_scores(seed=3, requires_grad=True)
    w = torch.randn(len(LENGTHS), dtype=torch.float64)
    log_z = LabelledSpans(scores, lengths, max_width).log_partition
    assert log_z.grad_fn is not None
    ours, = torch.autograd.grad((log_z * w).sum(), scores)
    brute_z = torch.stack([torch.logsumexp(t, 0) for _, t in enumerate_batch(scores, lengths, max_width)])
    want, = torch.autograd.grad((brute_z * w).sum(), scores)
    torch.testing.assert_close(ours, want, atol=1e-10, rtol=0)


def test_marginals_are_differentiable():
    scores, lengths = random_scores(seed=4, requires_grad=True)
    w_span = torch.randn(scores.shape, dtype=torch.float64)
    w_tok = torch.randn(scores.shape[0], scores.shape[1], 9, dtype=torch.float64)
    spans = LabelledSpans(scores, lengths, 3)
    tags = LabelledSpans.bioes_tags(NAMES)
    ours, = torch.autograd.grad((spans.marginals * w_span).sum() + (spans.token_marginals * w_tok).sum(), scores)
    total = 0
    for b, (sets, table) in enumerate(enumerate_batch(scores, lengths, 3)):
        p = torch.softmax(table, 0)
        for y, py in zip(sets, p):
            value = sum(w_span[b, i, j, e] for i, j, e in y)
            value = value + sum(w_tok[b, m, tags.index(t)] for m, t in
                                enumerate(brute.bioes(y, int(lengths[b]), NAMES)))
            total = total + py * value
    want, = torch.autograd.grad(total, scores)
    torch.testing.assert_close(ours, want, atol=1e-10, rtol=0)


def test_expected_score_matches_enumeration():
    scores, lengths = random_scores(seed=5)
    teacher_scores, _ = random_scores(seed=6)
    q = LabelledSpans(teacher_scores, lengths, 3).marginals
    got = LabelledSpans(scores, lengths, 3).expected_score(q)
    for b, (sets, t_table) in enumerate(enumerate_batch(teacher_scores, lengths, 3)):
        p = torch.softmax(t_table, 0)
        want = sum(py * set_score(scores[b], y) for y, py in zip(sets, p))
        assert got[b].item() == pytest.approx(want.item(), abs=1e-10)


def test_ignored_entries_are_ignored_whatever_they_hold():
    scores, lengths = random_scores(seed=7)
    clean = LabelledSpans(scores, lengths, 2)
    dirty_scores = scores.clone()
    n = scores.shape[1]
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    ignored = ((i > j) | (j - i + 1 > 2)).view(1, n, n, 1) | (j.view(1, n, n, 1) >= lengths.view(-1, 1, 1, 1))
    ignored = ignored.expand_as(scores)
    garbage = torch.tensor([float("nan"), float("inf"), float("-inf"), 1e30], dtype=torch.float64)
    dirty_scores[ignored] = garbage[torch.arange(int(ignored.sum())) % 4]
    dirty = LabelledSpans(dirty_scores, lengths, 2)
    torch.testing.assert_close(dirty.log_partition, clean.log_partition, atol=0, rtol=0)
    torch.testing.assert_close(dirty.marginals, clean.marginals, atol=0, rtol=0)
    torch.testing.assert_close(dirty.token_marginals, clean.token_marginals, atol=0, rtol=0)
    assert dirty.decode() == clean.decode()
    q = torch.rand(scores.shape, dtype=torch.float64)
    torch.testing.assert_close(dirty.expected_score(q), clean.expected_score(q), atol=0, rtol=0)
    assert (clean.marginals[ignored] == 0).all()
    x = dirty_scores.clone().requires_grad_(True)
    grad, = torch.autograd.grad(LabelledSpans(x, lengths, 2).log_partition.sum(), x)
    assert torch.isfinite(grad).all() and (grad[ignored] == 0).all()


def test_minus_inf_spans_are_impossible_and_safe():
    scores, lengths = random_scores(seed=8)
    scores = scores.clone()
    scores[:, 0, 1, :] = float("-inf")  # every type of one span
    scores[:, 1, 1, 0] = float("-inf")  # one type of another
    x = scores.clone().requires_grad_(True)
    spans = LabelledSpans(x, lengths)
    for b, (sets, table) in enumerate(enumerate_batch(scores, lengths, None)):
        assert spans.log_partition[b].item() == pytest.approx(torch.logsumexp(table, 0).item(), abs=1e-10)
    grad, = torch.autograd.grad(spans.log_partition.sum(), x)
    assert torch.isfinite(grad).all() and (grad[:, 0, 1] == 0).all() and (grad[:, 1, 1, 0] == 0).all()
    m_grad, = torch.autograd.grad(LabelledSpans(x, lengths).token_marginals[..., 1].sum(), x)
    assert torch.isfinite(m_grad).all()
    with torch.no_grad():
        spans = LabelledSpans(scores, lengths)
        assert torch.isfinite(spans.marginals).all() and (spans.marginals[:, 0, 1] == 0).all()
        assert torch.isfinite(spans.expected_score(spans.marginals)).all()
        assert all((0, 1, e) not in d for d in spans.decode() for e in range(2))


def test_extreme_scores_are_exact_in_float64():
    scores, lengths = random_scores(seed=9, scale=1e4)
    scores[0, 0, 4, 1] = scores[0, 1, 4, 0] = 5e4  # two near-tied competing analyses of the first sentence
    scores[0, 0, 0, 0] = 5e4 - float(scores[0, 1, 4, 0]) + 0.5
    spans = LabelledSpans(scores, lengths)
    tags = LabelledSpans.bioes_tags(NAMES)
    for b, (sets, table) in enumerate(enumerate_batch(scores, lengths, None)):
        n = int(lengths[b])
        assert spans.log_partition[b].item() == pytest.approx(torch.logsumexp(table, 0).item(), rel=1e-12)
        assert spans.decode()[b] == sorted(sets[int(table.argmax())])
        want = torch.zeros(scores.shape[1], len(tags), dtype=torch.float64)
        for y, py in zip(sets, torch.softmax(table, 0)):
            for m, tag in enumerate(brute.bioes(y, n, NAMES)):
                want[m, tags.index(tag)] += py
        torch.testing.assert_close(spans.token_marginals[b], want, atol=1e-9, rtol=0)
    assert 0.1 < spans.token_marginals[0, 0, 1 + 4].item() < 0.9  # really split between B-LOC and B-PER


def test_no_graph_under_no_grad_and_float32_agrees_with_float64():
    scores, lengths = random_scores(seed=11, requires_grad=True)
    with torch.no_grad():
        spans = LabelledSpans(scores, lengths, 3)
        for x in (spans.log_partition, spans.marginals, spans.token_marginals):
            assert not x.requires_grad
    s32 = LabelledSpans(scores.detach().float(), lengths, 3)
    assert s32.token_marginals.dtype == torch.float32
    torch.testing.assert_close(s32.marginals.double(), spans.marginals, atol=1e-5, rtol=0)
    torch.testing.assert_close(s32.token_marginals.double(), spans.token_marginals, atol=1e-5, rtol=0)
    torch.testing.assert_close(s32.log_partition.double(), spans.log_partition, atol=1e-5, rtol=0)
    half = LabelledSpans(scores.detach().half(), lengths, 3)
    assert half.log_partition.dtype == torch.float32


def test_log_partition_before_or_after_marginals_is_the_same():
    scores, lengths = random_scores(seed=12)
    first = LabelledSpans(scores, lengths, 2)
    z1 = first.log_partition
    m1 = first.token_marginals
    second = LabelledSpans(scores, lengths, 2)
    m2 = second.token_marginals
    z2 = second.log_partition
    torch.testing.assert_close(z1, z2, atol=0, rtol=0)
    torch.testing.assert_close(m1, m2, atol=1e-15, rtol=0)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), scale=st.sampled_from([1.0, 30.0, 1e3, 1e4]),
       dtype=st.sampled_from([torch.float32, torch.float64]), num_types=st.integers(1, 3),
       max_width=st.sampled_from([None, 1, 2, 4, 20]))
def test_property_finite_normalised_and_well_formed(seed, scale, dtype, num_types, max_width):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 13, (3,), generator=g)
    n = int(lengths.max())
    scores = ((torch.rand(3, n, n, num_types, generator=g, dtype=torch.float64) * 2 - 1) * scale).to(dtype)
    spans = LabelledSpans(scores, lengths, max_width)
    log_z, marginals, tokens = spans.log_partition, spans.marginals, spans.token_marginals
    assert torch.isfinite(log_z).all() and torch.isfinite(marginals).all() and torch.isfinite(tokens).all()
    assert (marginals >= 0).all() and (tokens >= 0).all()
    mask = torch.arange(n) < lengths.unsqueeze(1)
    # float32 keeps ~7 digits of scores up to n * 1e4, so its marginals carry ~1e-3 relative error there
    tol = 1e-9 if dtype == torch.float64 else (1e-4 if scale <= 30 else 3e-2)
    torch.testing.assert_close(tokens.sum(-1), mask.to(dtype), atol=tol, rtol=0)
    # S column = single-token span marginals; every token is covered by at most one span
    torch.testing.assert_close(tokens[..., 4::4], marginals.diagonal(dim1=1, dim2=2).transpose(1, 2), atol=1e-6,
                               rtol=0)
    width = max_width or n
    best = spans.best_bioes
    for b, decoded in enumerate(spans.decode()):
        covered = set()
        for i, j, e in decoded:
            assert 0 <= i <= j < int(lengths[b]) and j - i + 1 <= width and 0 <= e < num_types
            assert covered.isdisjoint(range(i, j + 1))
            covered.update(range(i, j + 1))
        assert all(best[b, m] == 0 for m in range(int(lengths[b])) if m not in covered)
    # the best set never scores above log Z
    assert (spans.expected_score(spans.argmax) <= log_z + 1e-6 * n * scale).all()
    # the structured loss of a span teacher: finite gradient = span marginals, each token covered at most once
    x = scores.clone().requires_grad_(True)
    grad, = torch.autograd.grad(LabelledSpans(x, lengths, max_width).log_partition.sum(), x)
    assert torch.isfinite(grad).all() and (grad >= 0).all()
    torch.testing.assert_close(grad, marginals, atol=tol, rtol=0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(span_scores=torch.zeros(2, 3, 3)), "4 dimensions"),
    (dict(span_scores=torch.zeros(2, 3, 4, 2)), "4 dimensions"),
    (dict(span_scores=torch.zeros(2, 3, 3, 0)), "non-empty"),
    (dict(span_scores=torch.zeros(2, 3, 3, 2, dtype=torch.long)), "floating point"),
    (dict(span_scores=[[0.0]]), "must be a tensor"),
    (dict(lengths=torch.tensor([0, 2])), ">= 1"),
    (dict(lengths=torch.tensor([4, 2])), "<= 3"),
    (dict(lengths=torch.tensor([2])), "shape \\[2\\]"),
    (dict(lengths=torch.tensor([1.0, 2.0])), "integers"),
    (dict(max_width=0), ">= 1"),
    (dict(max_width=-2), ">= 1"),
    (dict(max_width=2.5), "integer"),
    (dict(max_width=True), "integer"),
    (dict(span_scores=torch.zeros(2, 3, 3, 2).index_put_((torch.tensor(0), torch.tensor(0), torch.tensor(1)),
                                                           torch.tensor(float("nan")))), "NaN"),
    (dict(span_scores=torch.zeros(2, 3, 3, 2).index_put_((torch.tensor(1), torch.tensor(1), torch.tensor(1)),
                                                           torch.tensor(float("inf")))), "NaN or \\+inf"),
])
def test_bad_input_is_a_clear_error(kwargs, message):
    args = dict(span_scores=torch.zeros(2, 3, 3, 2), lengths=torch.tensor([3, 2]))
    args.update(kwargs)
    with pytest.raises(StructureInputError, match=message):
        LabelledSpans(**args)


def test_expected_score_checks_its_shape():
    with pytest.raises(StructureInputError, match="span_marginals must have shape"):
        LabelledSpans(torch.zeros(2, 3, 3, 2)).expected_score(torch.zeros(2, 3, 3, 1))


def test_defaults_and_wide_max_width():
    scores, lengths = random_scores(seed=13, lengths=[4, 4])
    full = LabelledSpans(scores)
    assert full.lengths.tolist() == [4, 4] and full.max_width == 4
    torch.testing.assert_close(LabelledSpans(scores, lengths, 100).token_marginals, full.token_marginals,
                               atol=0, rtol=0)
    assert math.isfinite(full.log_partition.sum().item())


@pytest.mark.parametrize("scale", [1e4, 1e6])
def test_float32_at_large_scale_is_normalised_and_matches_float64(scale):
    scores, lengths = random_scores(seed=13, scale=scale)
    exact = LabelledSpans(scores, lengths, 3)
    s32 = LabelledSpans(scores.float(), lengths, 3)
    mask = (torch.arange(scores.shape[1]) < lengths.unsqueeze(1)).float()
    assert s32.token_marginals.dtype == torch.float32 and torch.isfinite(s32.log_partition).all()
    torch.testing.assert_close(s32.token_marginals.sum(-1), mask, atol=1e-5, rtol=0)
    torch.testing.assert_close(s32.token_marginals.double(), exact.token_marginals, atol=1e-5, rtol=0)
    torch.testing.assert_close(s32.log_partition.double(), exact.log_partition, rtol=1e-6, atol=0)
