"""One enumeration harness over every structure: the `structs.base.Structure` convention (log Z, part
marginals, expected score, decoding, indicators, dtype) checked against brute force on a table of tiny inputs.

Each structure's own test file proves its scores against hand-written brute-force scores; this file proves that
all of them honour one interface, so code written against `Structure` works on any of them.
"""
import pytest
import torch

from skd_flair.structs import DependencyTree, LinearChainCRF
from skd_flair.structs.base import Structure
from skd_flair.structs.second_order import SiblingTree
from skd_flair.structs.semi_markov import SemiMarkovCRF
from skd_flair.structs.spans import LabelledSpans
from tests import brute

LENGTHS = torch.tensor([4, 3])  # the second item is padded
N = 4


def _rand(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _heads(tree, n):
    return torch.tensor([-1, *tree] + [-1] * (N - n))


def _tags(y, n):
    return torch.tensor(list(y) + [-1] * (N - n))


# name: (build the structure, every structure of an item of length n in decode()'s index form)
CASES = {
    "chain": (lambda: LinearChainCRF(_rand(2, N, 3, seed=1), _rand(3, 3, seed=2), LENGTHS, _rand(3, seed=3),
                                     _rand(3, seed=4)),
              lambda n: [_tags(y, n) for y in brute.sequences(n, 3)]),
    "spans": (lambda: LabelledSpans(_rand(2, N, N, 2, seed=5), LENGTHS, max_width=3),
              lambda n: brute.span_sets(n, 2, 3)),
    "semi_markov": (lambda: SemiMarkovCRF(_rand(2, N, 3, 2, seed=6), _rand(2, 2, seed=7), LENGTHS),
                    lambda n: brute.segmentations(n, 2, 3)),
    "tree_nonprojective": (lambda: DependencyTree(_rand(2, N + 1, N + 1, seed=8), LENGTHS),
                           lambda n: [_heads(t, n) for t in brute.trees(n, False, True)]),
    "tree_projective_multi_root": (
        lambda: DependencyTree(_rand(2, N + 1, N + 1, seed=9), LENGTHS, projective=True, single_root=False),
        lambda n: [_heads(t, n) for t in brute.trees(n, True, False)]),
    "sibling_tree": (lambda: SiblingTree(_rand(2, N + 1, N + 1, seed=10), _rand(2, N + 1, N + 1, N + 1, seed=11),
                                         LENGTHS),
                     lambda n: [_heads(t, n) for t in brute.trees(n, True, True)]),
}


def _batch(best, b, y):
    """The batch's best structures with item b replaced by y (the index form is a tensor or a list)."""
    if torch.is_tensor(best):
        out = best.clone()
        out[b] = y
        return out
    return [y if i == b else best[i] for i in range(len(best))]


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_structure_honours_the_convention_against_enumeration(name):
    build, enumerate_item = CASES[name]
    structure = build()
    assert isinstance(structure, Structure)
    best = structure.decode()
    parts = structure.part_marginals
    expected = structure.expected_score(*parts)
    log_z = structure.log_partition
    for b, n in enumerate(LENGTHS.tolist()):
        ys = enumerate_item(n)
        scores = torch.stack([structure.score(_batch(best, b, y))[b] for y in ys])
        probs = torch.softmax(scores, 0)
        assert log_z[b].item() == pytest.approx(torch.logsumexp(scores, 0).item(), abs=1e-9)
        for k, part in enumerate(parts):
            want = sum(p * structure.indicators(_batch(best, b, y))[k][b] for p, y in zip(probs, ys))
            torch.testing.assert_close(part[b], want.to(part.dtype), atol=1e-9, rtol=0)
        assert expected[b].item() == pytest.approx((probs * scores).sum().item(), abs=1e-9)
        assert structure.score(best)[b].item() == pytest.approx(scores.max().item(), abs=1e-9)
        best_item = best[b]
        assert any((torch.equal(best_item, y) if torch.is_tensor(y) else best_item == y) for y in ys)
    for got, want in zip(structure.best_parts, structure.indicators(best)):
        assert torch.equal(got, want)
    assert log_z.dtype == torch.float64 and all(p.dtype == torch.float64 for p in parts)
