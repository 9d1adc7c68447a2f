"""Biaffine parsers (first and second order) as Flair models: losses, decoding and marginals against
enumeration, training through ModelTrainer, save/load, well-formed trees, evaluation."""
import copy

import flair
import pytest
import torch
from flair.data import Dictionary, Sentence
from flair.trainers import ModelTrainer

from skd_flair.distill.mean_field import MeanFieldTreeScores
from skd_flair.distill.scores import TreeScores
from skd_flair.models.dependency_eval import AttachmentScores, is_punctuation, is_well_formed
from skd_flair.models.parser import BiaffineParser, is_projective
from skd_flair.structs.mean_field import mean_field_arc_marginals
from tests import brute
from tests.parsing import (mfvi_loop, parser, randomize, set_tree, small_corpus, tiny_corpus,
                           tiny_relations, tree_distribution)

VARIANTS = {
    "first-local": dict(objective="local"),
    "first-crf": dict(objective="crf"),
    "first-crf-projective": dict(objective="crf", projective=True),
    "first-local-projective": dict(objective="local", projective=True),
    "second-exact": dict(second_order=True, projective=True, objective="crf"),
    "second-mfvi-local": dict(second_order=True, inference="mfvi", objective="local"),
    "second-mfvi-crf": dict(second_order=True, inference="mfvi", objective="crf", projective=True),
}


@pytest.fixture(scope="module")
def corpus():
    return small_corpus()


def heads_of(sentence):
    return [t.head_id for t in sentence]


def assert_trees(sentences, projective=False, label_name="dependency"):
    for s in sentences:
        heads = heads_of(s)
        assert is_well_formed(heads, single_root=True), heads
        if projective:
            assert is_projective(heads), heads
        rels = [t.get_label(label_name).value for t in s]
        assert "<unk>" not in rels
        assert [r == "root" for r in rels] == [h == 0 for h in heads]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_trains_saves_loads_and_parses(corpus, tmp_path, name):
    cfg = VARIANTS[name]
    model = parser(corpus, seed=1, **cfg)
    result = ModelTrainer(model, corpus).train(tmp_path, max_epochs=1, mini_batch_size=8, learning_rate=0.1,
                                               save_final_model=True)
    # the trainer's test score is what evaluate says of the model it kept
    assert result["test_score"] == pytest.approx(model.evaluate(corpus.test).main_score, abs=1e-9)
    model.eval()
    for loaded in (BiaffineParser.load(tmp_path / "final-model.pt"), flair.nn.Model.load(tmp_path / "final-model.pt")):
        assert type(loaded) is BiaffineParser
        assert loaded._config() == model._config()
        assert loaded.relation_names == model.relation_names
        ours, theirs = copy.deepcopy(list(corpus.test)), copy.deepcopy(list(corpus.test))
        model.predict(ours)
        loaded.predict(theirs, label_name="parsed")
        assert [heads_of(s) for s in ours] == [heads_of(s) for s in theirs]
        assert_trees(ours, projective=cfg.get("projective", False))
        assert_trees(theirs, projective=cfg.get("projective", False), label_name="parsed")
    ev = model.evaluate(corpus.dev, gold_label_type="dependency", out_path=tmp_path / "dev.tsv")
    assert ev.main_score == ev.scores["las"] and ev.scores["well_formed"] == 1.0
    assert "UAS" in ev.detailed_results and "without punctuation" in ev.detailed_results
    assert (tmp_path / "dev.tsv").read_text().count("\n\n") == len(corpus.dev)
    # the gold trees were not touched by evaluation
    for s in corpus.dev:
        assert is_well_formed(heads_of(s))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_loss_decoding_and_marginals_equal_enumeration(name):
    cfg = VARIANTS[name]
    corpus = tiny_corpus()
    model = randomize(parser(corpus, relations=tiny_relations(), dim=6, **cfg), seed=2)
    projective = cfg.get("projective", False)
    trees = {3: [(2, 0, 2), (0, 1, 1), (3, 3, 0), (3, 0, 2)], 2: [(0, 1), (2, 0)], 1: [(0,)]}
    sentences = []
    for n, options in trees.items():
        for heads in options:
            if projective and not is_projective(heads):
                continue
            rels = ["root" if h == 0 else ("nsubj" if d % 2 else "obj") for d, h in enumerate(heads, start=1)]
            sentences.append(set_tree(Sentence(["a", "b", "c", "d"][:n]), heads, rels))
    with torch.no_grad():
        hidden, lengths = model._represent(sentences)
        arcs, sibs = model._arc_scores(hidden), model._sib_scores(hidden)
        loss = model._loss(hidden, arcs, sibs, lengths, sentences)
        decoded = model._decode_heads(arcs, sibs, lengths)
        scores = model.teacher_scores(sentences)
        rel_logits = model._rel_full(hidden).double()
    want = 0.0
    for b, s in enumerate(sentences):
        n = len(s)
        a = arcs[b].double()
        sb = None if sibs is None else sibs[b].double()
        gold = tuple(heads_of(s))
        if cfg["objective"] == "crf":
            ts, logp = tree_distribution(a, sb, n, projective)
            want -= logp[ts.index(gold)]
        elif cfg.get("second_order"):
            q = mfvi_loop(a, sb, n, model.mfvi_iterations)
            want -= sum(torch.log(q[h, d]) for d, h in enumerate(gold, start=1))
        else:
            for d, h in enumerate(gold, start=1):
                col = torch.tensor([a[x, d] if x != d else float("-inf") for x in range(n + 1)])
                want -= torch.log_softmax(col, 0)[h]
        for d, (h, token) in enumerate(zip(gold, s), start=1):
            r = model.relation_names.index(token.get_label("dependency").value)
            want -= torch.log_softmax(rel_logits[b, h, d], 0)[r]
        # decoding: the best tree (second order exact: with sibling scores; mean field: of its logits)
        if cfg.get("second_order") and cfg.get("inference") == "mfvi":
            q = mfvi_loop(a, sb, n, model.mfvi_iterations)
            ts = brute.trees(n, projective, True)
            best = max(ts, key=lambda t: sum(float(torch.log(q[h, d])) for d, h in enumerate(t, start=1)))
        else:
            ts, logp = tree_distribution(a, sb, n, projective)
            best = ts[int(logp.argmax())]
        assert tuple(decoded[b, 1:n + 1].tolist()) == best
        # marginals: exact tree marginals, or the mean-field Q
        m = scores.marginals().arcs[b, :n + 1, :n + 1]
        if isinstance(scores, MeanFieldTreeScores):
            want_m = mfvi_loop(a, sb, n, model.mfvi_iterations)
        else:
            ts, logp = tree_distribution(a, sb, n, projective)
            want_m = torch.zeros(n + 1, n + 1, dtype=torch.float64)
            for t, lp in zip(ts, logp.exp()):
                for d, h in enumerate(t, start=1):
                    want_m[h, d] += lp
        torch.testing.assert_close(m, want_m, atol=1e-6, rtol=0)
    torch.testing.assert_close(loss.double(), torch.as_tensor(want, dtype=torch.float64), atol=1e-4, rtol=1e-5)


def test_teacher_scores_carry_what_the_objectives_need():
    corpus = tiny_corpus()
    sentences = [Sentence(["a", "b", "c"]), Sentence(["d"])]
    first = randomize(parser(corpus, relations=tiny_relations(unk=True), dim=6), seed=3)
    s = first.teacher_scores(sentences)
    assert type(s) is TreeScores and s.siblings is None and not s.projective and s.single_root
    assert s.relation_names == ["<unk>", "root", "nsubj", "obj"]
    rel = s.marginals().relations
    assert float(rel[..., 0].max()) == 0.0  # <unk> is never a teacher relation
    torch.testing.assert_close(rel[:, 0, 1:, 1], torch.ones(2, 3, dtype=torch.float64))  # ROOT arcs are "root"
    assert float(rel[:, 1:, 1:, 1].max()) == 0.0  # word-to-word arcs are not
    local = s.marginals(arc_marginals="local").arcs
    torch.testing.assert_close(local[0].sum(0)[1:], torch.ones(3, dtype=torch.float64))
    second = randomize(parser(corpus, relations=tiny_relations(), dim=6, second_order=True, projective=True), 3)
    s2 = second.teacher_scores(sentences)
    assert s2.siblings is not None and s2.projective
    mf = randomize(parser(corpus, relations=tiny_relations(), dim=6, second_order=True, inference="mfvi",
                           objective="local"), 3)
    s3 = mf.teacher_scores(sentences)
    assert isinstance(s3, MeanFieldTreeScores) and s3.sib_scores is not None and not s3.projective
    torch.testing.assert_close(s3.marginals().arcs, s3.marginals(arc_marginals="mfvi").arcs)
    m = mf.marginals(sentences, temperature=2.0)
    torch.testing.assert_close(m.arcs[0].sum(0)[1:], torch.ones(3, dtype=torch.float64))


def test_mean_field_without_sibling_scores_or_iterations_is_the_local_softmax():
    g = torch.Generator().manual_seed(0)
    arcs = torch.randn(2, 4, 4, generator=g, dtype=torch.float64)
    sibs = torch.randn(2, 4, 4, 4, generator=g, dtype=torch.float64)
    lengths = torch.tensor([3, 2])
    local = TreeScores(arcs, lengths).marginals(arc_marginals="local").arcs
    torch.testing.assert_close(mean_field_arc_marginals(arcs, None, lengths), local)
    zero_first = sibs.clone()
    idx = torch.arange(4)
    zero_first[:, idx, idx, :] = 0
    torch.testing.assert_close(mean_field_arc_marginals(arcs, zero_first, lengths, iterations=0), local)
    q = mean_field_arc_marginals(arcs, sibs, lengths, iterations=4)
    torch.testing.assert_close(q[0], mfvi_loop(arcs[0], sibs[0], 3, 4))
    torch.testing.assert_close(q[1, :3, :3], mfvi_loop(arcs[1], sibs[1], 2, 4))
    assert float(q[1, 3].abs().max()) == 0.0 and float(q[1, :, 3].abs().max()) == 0.0  # padding
    # gradients flow through the unrolled updates
    a = arcs.clone().requires_grad_(True)
    s = sibs.clone().requires_grad_(True)
    mean_field_arc_marginals(a, s, lengths)[:, 0, 1].sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_invalid_configurations_are_refused():
    corpus = tiny_corpus()
    with pytest.raises(ValueError, match="projective"):
        parser(corpus, relations=tiny_relations(), second_order=True)  # exact second order is projective
    with pytest.raises(ValueError, match="mfvi"):
        parser(corpus, relations=tiny_relations(), second_order=True, projective=True, objective="local")
    with pytest.raises(ValueError, match="second_order"):
        parser(corpus, relations=tiny_relations(), inference="mfvi")
    with pytest.raises(ValueError, match="objective"):
        parser(corpus, relations=tiny_relations(), objective="hinge")
    with pytest.raises(ValueError, match="main metric"):
        parser(corpus, relations=tiny_relations(), main_metric="f1")


def test_gold_trees_outside_the_support_and_unseen_relations():
    corpus = tiny_corpus()
    rels = Dictionary(add_unk=False)
    rels.add_item("root")
    rels.add_item("nsubj")
    model = randomize(parser(corpus, relations=rels, dim=6, projective=True), seed=4).train()
    # a relation the dictionary lacks, and crossing arcs (1 -> 3, 2 -> 4)
    s = set_tree(Sentence(["a", "b", "c", "d"]), (0, 1, 1, 3), ["root", "nsubj", "obj", "nsubj"])
    assert is_projective([0, 1, 1, 3])
    crossing = set_tree(Sentence(["a", "b", "c", "d"]), (2, 0, 1, 2), ["nsubj", "root", "obj", "nsubj"])
    assert not is_projective([2, 0, 1, 2])
    model.skipped_trees = 0
    loss, count = model.forward_loss([s, crossing])
    assert count == 8 and torch.isfinite(loss) and model.skipped_trees == 1
    loss.backward()
    result = model.evaluate([s, crossing])
    hits = 0
    for gold in (s, crossing):
        copy = Sentence([t.text for t in gold])
        model.predict(copy)
        hits += sum(g.head_id == p.head_id and g.get_label("dependency").value == p.get_label("dependency").value
                    for g, p in zip(gold, copy))
    assert result.main_score == pytest.approx(hits / 8)  # LAS over the 8 tokens (no punctuation here)
    # a sentence without gold heads is parsed, not scored
    plain = Sentence(["d", "c"])
    model.predict(plain)
    assert is_well_formed(heads_of(plain))


def test_hub_ids_load_from_a_prepopulated_flair_cache(tmp_path, monkeypatch):
    from skd_flair.models.dependency_tagger import DependencyTagger, make_tag_dictionary
    from skd_flair.training.hub import install_in_flair_cache

    corpus = tiny_corpus()
    model = randomize(parser(corpus, relations=tiny_relations(), dim=6, second_order=True, projective=True), 7)
    model.save(tmp_path / "parser.pt")
    for s in corpus.train:
        set_tree(s, [0, 1, 2, 3], ["root", "obj", "obj", "nsubj"])
    student = DependencyTagger(model.embeddings, make_tag_dictionary(corpus), hidden_size=4, repair="eisner")
    student.save(tmp_path / "student.pt")
    monkeypatch.setattr(flair, "cache_root", tmp_path / "flair_cache")
    install_in_flair_cache(tmp_path / "parser.pt", "someone/skd-parser")
    install_in_flair_cache(tmp_path / "student.pt", "someone/skd-sl-student")
    loaded = BiaffineParser.load("someone/skd-parser")
    assert type(loaded) is BiaffineParser and loaded._config() == model._config()
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    sl = DependencyTagger.load("someone/skd-sl-student")
    assert type(sl) is DependencyTagger and sl.repair == "eisner" and sl.label_names == student.label_names


def test_attachment_scores_with_and_without_punctuation():
    s = set_tree(Sentence(["Hello", "world", "!"]), (0, 1, 1), ["root", "obj", "punct"])
    s[2].set_label("upos", "PUNCT")
    s[0].set_label("upos", "INTJ")
    scorer = AttachmentScores()
    scorer.add(s, [0, 1, 2], ["root", "nsubj", "punct"])
    got = scorer.scores()
    assert got["uas"] == pytest.approx(2 / 3) and got["las"] == pytest.approx(1 / 3)
    assert got["uas_nopunct"] == 1.0 and got["las_nopunct"] == 0.5 and got["well_formed"] == 1.0
    assert is_punctuation(Sentence(["..."])[0]) and not is_punctuation(Sentence(["$"])[0])
    word = Sentence(["!"])[0]
    word.set_label("upos", "SYM")
    assert not is_punctuation(word)
    scorer.add(s, [None, 0, 0], ["root", "obj", "punct"])  # a missing head is wrong, two roots are no tree
    assert scorer.scores()["well_formed"] == 0.5 and scorer.words == 6
