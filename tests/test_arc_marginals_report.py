"""experiments.arc_marginals: per-word comparison of a parsing teacher's exact tree marginals with the local softmax."""
import pytest
import torch
from flair.data import Sentence

from skd_flair.distill.scores import TreeScores

BIG = 20.0


class _Teacher:
    """Arc scores given per sentence ([N+1, N+1], [h, d]); gold heads given per sentence."""

    def __init__(self, arcs, heads):
        self.arcs, self.heads = arcs, heads

    def _index(self, sentence):
        return int(sentence[0].text)

    def teacher_scores(self, chunk):
        size = max(len(s) for s in chunk) + 1
        arcs = torch.full((len(chunk), size, size), -1e4)
        for b, s in enumerate(chunk):
            a = self.arcs[self._index(s)]
            arcs[b, :a.shape[0], :a.shape[1]] = a
        return TreeScores(arcs, torch.tensor([len(s) for s in chunk]))

    def _gold(self, chunk, size):
        heads = torch.full((len(chunk), size), -1, dtype=torch.long)
        for b, s in enumerate(chunk):
            heads[b, 1:len(s) + 1] = torch.tensor(self.heads[self._index(s)])
        return heads, None, None


def _chain(n):
    """Word d's head is d-1 by a wide margin (word 1's is the root): local softmax and tree agree."""
    a = torch.zeros(n + 1, n + 1)
    for d in range(1, n + 1):
        a[d - 1, d] = BIG
    return a, list(range(n))


def test_a_confident_tree_is_the_same_either_way_and_padding_does_not_count():
    from experiments.arc_marginals import compare

    a0, h0 = _chain(5)
    a1, h1 = _chain(2)
    teacher = _Teacher([a0, a1], [h0, h1])
    out = compare(teacher, [Sentence(["0"] * 5), Sentence(["1"] * 2)], gold=True)
    assert out["words"] == 7
    assert out["total_variation"] < 1e-6 and out["argmax_differs"] == 0
    assert out["argmax_is_gold_tree"] == 1.0 and out["argmax_is_gold_local"] == 1.0
    assert out["gold_mass_tree"] > 0.999 and out["entropy_tree"] < 1e-3


def test_a_cycle_the_local_softmax_prefers_is_broken_by_the_tree():
    """Word 1 prefers word 2 as its head, word 2 prefers word 1 (a cycle, no tree); of the two trees root->1->2
    scores 9 and root->2->1 scores 7. Every figure below is worked out by hand from those scores."""
    import math

    from experiments.arc_marginals import compare

    a = torch.zeros(3, 3)
    a[2, 1], a[1, 2], a[0, 1], a[0, 2] = 5.0, 5.0, 4.0, 2.0
    teacher = _Teacher([a], [[0, 1]])
    out = compare(teacher, [Sentence(["0", "0"])], gold=True)
    tree = 1 / (1 + math.exp(-2))  # P(root->1->2)
    local1 = 1 / (1 + math.exp(1))  # word 1: P(root) against word 2
    local2 = 1 / (1 + math.exp(-3))  # word 2: P(word 1) against the root
    assert out["argmax_differs"] == 0.5  # word 1 only
    assert out["argmax_is_gold_tree"] == 1.0 and out["argmax_is_gold_local"] == 0.5
    assert out["total_variation"] == pytest.approx((abs(tree - local1) + abs(tree - local2)) / 2)
    assert out["gold_mass_tree"] == pytest.approx(tree) and out["gold_mass_local"] == pytest.approx((local1 + local2) / 2)

    def h(p):
        return -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert out["entropy_tree"] == pytest.approx(h(tree)) and out["entropy_local"] == pytest.approx((h(local1) + h(local2)) / 2)


def test_the_results_table_shows_each_split_and_leaves_gold_columns_empty_without_gold(tmp_path):
    import json

    from experiments.report import arc_marginals_table

    figures = {"words": 10, "entropy_tree": 0.05, "entropy_local": 0.25, "total_variation": 0.125, "argmax_differs": 0.3}
    gold = {"gold_mass_tree": 0.9, "gold_mass_local": 0.8, "argmax_is_gold_tree": 0.95, "argmax_is_gold_local": 0.7}
    (tmp_path / "p2o").mkdir()
    (tmp_path / "p2o" / "arc_marginals.json").write_text(json.dumps(
        {"suite": "p2o", "dev": {**figures, **gold}, "unlabelled": figures}))
    rows = [line for line in arc_marginals_table(tmp_path) if line.startswith("| p2o")]
    assert rows == ["| p2o | dev | 10 | 0.050 / 0.250 | 0.125 | 30.0 | 90.0 / 80.0 | 95.0 / 70.0 |",
                    "| p2o | unlabelled | 10 | 0.050 / 0.250 | 0.125 | 30.0 | - | - |"]
    assert arc_marginals_table(tmp_path / "p2o") == []
