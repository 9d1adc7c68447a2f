"""Dependency parsing as sequence labelling: the offset encoding on real treebanks, decoding and repair, unseen
tags, training through ModelTrainer, and KD from parser teachers (cases 1b and 2b) against enumeration."""
import copy
import itertools

import flair
import pytest
import torch
from flair.data import Dictionary, Sentence
from flair.datasets.treebanks import UniversalDependenciesDataset
from flair.embeddings import OneHotEmbeddings
from flair.trainers import ModelTrainer

from skd_flair.distill import StructuralKD
from skd_flair.models.dependency_eval import is_well_formed
from skd_flair.models.dependency_tagger import (DependencyTagger, OffsetTagCodec, decode_offset_tags, encode_corpus,
                                                encode_sentence, make_tag_dictionary)
from skd_flair.models.parser import is_projective
from skd_flair.models.tagger import KD_TARGETS, UNLABELLED
from skd_flair.training.annotate import annotate
from skd_flair.training.corpora import load_corpus
from skd_flair.training.pipeline import evaluate_model
from skd_flair.training.plugin import DistillationPlugin
from tests import brute
from tests.parsing import (RELATIONS, SLICE, head_assignments, mfvi_loop, parser, randomize, read_conllu,
                           set_tree, small_corpus, tiny_corpus, tiny_relations, tree_distribution, ud_slice)


def heads_of(sentence):
    return [t.head_id for t in sentence]


def rels_of(sentence, label="dependency"):
    return [t.get_label(label).value for t in sentence]


def one_hot(tag_lists, codec: OffsetTagCodec) -> torch.Tensor:
    n = max(len(t) for t in tag_lists)
    logp = torch.full((len(tag_lists), n, len(codec)), float("-inf"), dtype=torch.float64)
    for b, tags in enumerate(tag_lists):
        for i, tag in enumerate(tags):
            logp[b, i, codec.index[tag]] = 0.0
    return logp


def assert_round_trip(sentences, batch=64):
    """Encoding every tree as offset tags and decoding the one-hot tags gives the tree back, exactly."""
    tags = [encode_sentence(s) for s in sentences]
    codec = OffsetTagCodec(sorted({t for ts in tags for t in ts}))
    nonprojective = 0
    for i in range(0, len(sentences), batch):
        chunk, chunk_tags = sentences[i:i + batch], tags[i:i + batch]
        logp = one_hot(chunk_tags, codec)
        lengths = [len(s) for s in chunk]
        for repair in ("none", "mst", "top3", "eisner"):
            for s, (heads, rels) in zip(chunk, decode_offset_tags(logp, lengths, codec, repair)):
                if repair == "eisner" and not is_projective(heads_of(s)):
                    nonprojective += 1
                    assert is_projective(heads) and is_well_formed(heads)
                    continue
                assert (heads, rels) == (heads_of(s), rels_of(s)), (repair, s)
    return nonprojective


def test_offset_tags_follow_the_reference_encoding():
    s = set_tree(Sentence(["The", "dog", "barks", "."]), (2, 3, 0, 3), ["det", "nsubj", "root", "punct"])
    assert encode_sentence(s) == ["1_det", "1_nsubj", "-3_root", "-1_punct"]
    assert [t.get_label("dependency_sl").value for t in s] == ["1_det", "1_nsubj", "-3_root", "-1_punct"]
    s[1].head_id = None  # a token without a head gets no tag
    assert encode_sentence(s, tag_type="x") == ["1_det", None, "-3_root", "-1_punct"]
    assert not s[1].get_labels("x")
    corpus = tiny_corpus()
    for sentence in corpus.get_all_sentences():
        set_tree(sentence, [0] + [1] * (len(sentence) - 1), ["root"] + ["dep"] * (len(sentence) - 1))
    encode_corpus(corpus, tag_type="y")
    assert [t.get_label("y").value for t in corpus.dev[0]] == ["-1_root", "-1_dep", "-2_dep", "-3_dep"]


def test_encoding_round_trips_every_tree_of_the_bundled_slice():
    corpus = ud_slice()
    sentences = list(corpus.get_all_sentences())
    assert len(sentences) == 500
    assert assert_round_trip(sentences) > 0  # the slice has non-projective trees


@pytest.mark.data
def test_encoding_round_trips_the_full_dev_file(shared_data):
    path = shared_data / "ud" / "en_ewt" / "en_ewt-ud-dev.conllu"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    sentences = list(UniversalDependenciesDataset(path))
    assert len(sentences) == 2001
    assert_round_trip(sentences)
    raw, ranges, empty = read_conllu(path)
    assert ranges > 0 and empty > 0
    assert [[(t.text, t.head_id, t.get_label("dependency").value) for t in s] for s in sentences] == raw


def test_multiword_tokens_and_empty_nodes_are_skipped():
    raw, ranges, empty = read_conllu(SLICE / "train.conllu")
    assert ranges > 0 and empty > 0  # the slice exercises both
    corpus = ud_slice()
    got = [[(t.text, t.head_id, t.get_label("dependency").value) for t in s] for s in corpus.train]
    assert got == raw


# ---------------------------------------------------------------------------------------------- decoding
TAGS = ["<unk>"] + [f"{o}_{r}" for o in range(-4, 5) if o != 0 for r in ("root", "nsubj", "obj")]


def tag_probs(choices, n, codec, rest=0.0, seed=0):
    """Log probabilities ``[1, n, K]``: word i's ``choices[i]`` ({tag: prob}), the remaining mass spread over
    all other tags (``rest`` > 0) or put on <unk>."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.zeros(n, len(codec), dtype=torch.float64)
    for i, choice in enumerate(choices):
        for tag, p in choice.items():
            probs[i, codec.index[tag]] = p
        left = 1.0 - probs[i].sum()
        others = probs[i] == 0
        if rest:
            w = torch.rand(int(others.sum()), generator=g, dtype=torch.float64)
            probs[i, others] = left * w / w.sum()
        else:
            probs[i, codec.index["<unk>"]] += left
    return torch.log(probs).unsqueeze(0)


BROKEN = {
    "cycle": [{"1_nsubj": 0.6}, {"-1_obj": 0.5}, {"-3_root": 0.9}, {"-1_obj": 0.7}],
    "no root": [{"1_nsubj": 0.6}, {"1_obj": 0.5, "-2_root": 0.3}, {"-1_obj": 0.9}, {"-1_obj": 0.7, "-4_root": 0.2}],
    "several roots": [{"-1_root": 0.9}, {"-1_obj": 0.8}, {"-3_root": 0.5, "-1_obj": 0.4}, {"-1_obj": 0.7}],
    "out of range": [{"-2_nsubj": 0.6}, {"1_nsubj": 0.8}, {"-3_root": 0.9}, {"3_obj": 0.7}],
}


@pytest.mark.parametrize("case", list(BROKEN))
@pytest.mark.parametrize("rest", [0.0, 1.0])
def test_decoding_repairs_broken_tag_sequences_into_trees(case, rest):
    codec = OffsetTagCodec(TAGS)
    choices = BROKEN[case]
    n = len(choices)
    logp = tag_probs(choices, n, codec, rest)
    raw_heads, _ = decode_offset_tags(logp, [n], codec, "none")[0]
    assert not is_well_formed(raw_heads)
    if case == "out of range":
        assert raw_heads[0] is None and raw_heads[3] is None
    arcs = codec.head_log_probs(logp, torch.tensor([n]))[0]
    for repair in ("mst", "eisner", "top3"):
        heads, rels = decode_offset_tags(logp, [n], codec, repair)[0]
        assert is_well_formed(heads), (repair, heads)
        assert [r == "root" for r in rels] == [h == 0 for h in heads]
        if repair == "eisner":
            assert is_projective(heads)
        if repair in ("mst", "eisner") and rest:
            # the best tree under the tagger's own head distributions
            trees = brute.trees(n, repair == "eisner", True)
            best = max(trees, key=lambda t: sum(float(arcs[h, d]) for d, h in enumerate(t, start=1)))
            assert tuple(heads) == best
    if not rest:  # the reference heuristic, step by step
        heads, rels = decode_offset_tags(logp, [n], codec, "top3")[0]
        expected = {"cycle": [2, 3, 0, 3],  # the cycle 1 <-> 2 breaks at its weaker arc (2 -> 1)
                    "no root": [2, 0, 2, 3],  # the best root tag among 2nd/3rd choices: word 2 (0.3 > 0.2)
                    "several roots": [0, 1, 2, 3],  # word 3 keeps its second choice
                    "out of range": [3, 3, 0, 3]}[case]  # homeless words attach to the root word
        assert heads == expected


def test_unseen_tags_never_crash(tmp_path):
    corpus = tiny_corpus()
    emb = OneHotEmbeddings.from_corpus(corpus, embedding_length=4, min_freq=1)
    seen = Dictionary(add_unk=False)
    for t in ("1_nsubj", "-1_obj", "-2_obj", "-1_root", "-2_root"):
        seen.add_item(t)
    tagger = DependencyTagger(emb, seen, hidden_size=4)
    s = set_tree(Sentence(["a", "b", "c", "d"]), (0, 1, 1, 1), ["root", "nsubj", "obj", "obj"])
    gold = [tagger.label_names[k] for k in tagger._prepare_label_tensor([s]).tolist()]
    assert gold == ["-1_root", "1_nsubj", "-2_obj", "-2_obj"]  # "-1_nsubj", "-3_obj": nearest, same relation
    loss, n = tagger.forward_loss([s])
    assert n == 4 and torch.isfinite(loss)
    s.clear_embeddings()
    with_unk = make_tag_dictionary([copy.deepcopy(s)])
    assert "<unk>" in with_unk.get_items()
    other = DependencyTagger(emb, with_unk, hidden_size=4)
    odd = set_tree(Sentence(["a", "b"]), (2, 0), ["amod", "root"])
    assert other.label_names[other._prepare_label_tensor([odd])[0]] == "<unk>"
    # decoding with a dictionary that cannot express some heads (no root tag for word 3 or 4) still gives trees
    for repair in ("mst", "eisner", "top3", "none"):
        tagger.repair = repair
        sentences = [Sentence(["a", "b", "c", "d"]), Sentence(["d"]), Sentence(["c", "b", "a"])]
        tagger.predict(sentences, tag_label_name="tag")
        for sentence in sentences:
            if repair != "none":
                assert is_well_formed(heads_of(sentence))
            assert all(t.get_label("tag").value in tagger.label_names for t in sentence)
        result = tagger.evaluate([s, odd], repairs=("none", "top3"))
        assert result.main_score == pytest.approx(_las_by_hand(tagger, [s, odd]))


def _las_by_hand(model, gold_sentences, relation_type="dependency"):
    """LAS of `model`'s parses of copies of `gold_sentences`, counted token by token (no punctuation here)."""
    hits = total = 0
    for gold in gold_sentences:
        copy = Sentence([t.text for t in gold])
        model.predict(copy)
        for g, p in zip(gold, copy):
            hits += g.head_id == p.head_id and g.get_label(relation_type).value == p.get_label(relation_type).value
            total += 1
    return hits / total


# ---------------------------------------------------------------------------------------------- training
def student(corpus, tags, seed=0, dim=12, **kw):
    torch.manual_seed(seed)
    emb = OneHotEmbeddings.from_corpus(corpus, embedding_length=dim, min_freq=1)
    return DependencyTagger(emb, tags, hidden_size=8, **kw)


@pytest.fixture(scope="module")
def corpus():
    return small_corpus()


@pytest.mark.slow
def test_trains_saves_loads_and_predicts_trees(corpus, tmp_path):
    tags = make_tag_dictionary(corpus)
    model = student(corpus, tags, repair="top3")
    result = ModelTrainer(model, corpus).train(tmp_path, max_epochs=1, mini_batch_size=8, learning_rate=0.1,
                                               save_final_model=True)
    # the trainer's test score is what evaluate says of the model it kept
    assert result["test_score"] == pytest.approx(model.evaluate(corpus.test).main_score, abs=1e-9)
    model.eval()
    path = tmp_path / "final-model.pt"
    for loaded in (DependencyTagger.load(path), flair.nn.Model.load(path)):
        assert type(loaded) is DependencyTagger and loaded.repair == "top3" and not loaded.use_crf
        assert loaded.label_names == model.label_names
        for repair in ("mst", "eisner", "top3"):
            ours, theirs = copy.deepcopy(list(corpus.test)), copy.deepcopy(list(corpus.test))
            model.predict(ours, repair=repair)
            loaded.predict(theirs, repair=repair, label_name="parsed")
            assert [heads_of(s) for s in ours] == [heads_of(s) for s in theirs]
            for s in ours:
                assert is_well_formed(heads_of(s)) and (repair != "eisner" or is_projective(heads_of(s)))
    # a treebank read afresh carries trees, not the student's offset tags: `skd-flair evaluate` scores against them
    spec = {"type": "ud", "data_folder": str(SLICE), "sample_test": 20}
    fresh = evaluate_model({"path": str(path), "type": "dependency_tagger"}, spec)
    assert fresh["main_score"] == pytest.approx(model.evaluate(load_corpus(spec).test).main_score, abs=1e-9)
    assert fresh["scores"]["las"] == fresh["main_score"] and fresh["scores"]["words"] > 100
    ev = model.evaluate(corpus.dev, out_path=tmp_path / "dev.tsv", repairs=("none", "mst", "eisner"))
    assert ev.main_score == ev.scores["las"] and ev.scores["well_formed"] == 1.0
    assert {"norepair_las", "mst_uas", "eisner_las_nopunct", "tag_accuracy"} <= set(ev.scores)
    assert "norepair" in ev.detailed_results
    for s in corpus.dev:  # gold untouched
        assert is_well_formed(heads_of(s))


TEACHERS = {  # case, teacher configuration, arc marginals
    "1b-tree": ("1b", dict(objective="crf"), "tree"),
    "1b-tree-projective": ("1b", dict(objective="crf", projective=True), "tree"),
    "1b-local": ("1b", dict(objective="local"), "local"),
    "2b-exact": ("2b", dict(second_order=True, projective=True), "tree"),
    "2b-mfvi": ("2b", dict(second_order=True, inference="mfvi", objective="local"), "tree"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TEACHERS))
def test_kd_from_parser_teachers_through_model_trainer(corpus, tmp_path, name):
    _, cfg, arc_marginals = TEACHERS[name]
    teacher = randomize(parser(corpus, seed=2, dim=10, **cfg), seed=3, scale=0.3)
    tags = make_tag_dictionary(corpus)
    model = student(corpus, tags, seed=4)
    objective = {"type": "structural", "arc_marginals": arc_marginals, "temperature": 2.0}
    targets = annotate(teacher, corpus.train, model, objective, progress=False)
    assert len(targets) == len({tuple(t.text for t in s) for s in corpus.train})
    plugin = DistillationPlugin(targets, mix={"type": "annealed", "factor": 10.0})
    ModelTrainer(model, corpus).train(tmp_path, max_epochs=2, mini_batch_size=8, learning_rate=0.1, plugins=[plugin],
                                      save_final_model=True)
    rows = (tmp_path / "kd_loss.tsv").read_text().strip().splitlines()
    assert len(rows) == 3 and all(v == v for v in map(float, rows[2].split("\t")))
    assert 0.0 < plugin.history[0]["LAMBDA"] < 1.0 and plugin.history[-1]["KD_LOSS"] > 0
    loaded = DependencyTagger.load(tmp_path / "final-model.pt")
    assert loaded.kd_objective.config()["arc_marginals"] == arc_marginals


# ---------------------------------------------------------------------------------------------- exactness
def enumerated_kd(scores, emissions, tags, case_cfg, arc_marginals, temperature):
    """``-sum_y P_t(y) log P_s(y)`` per sentence, y = every (head assignment, relation assignment) the teacher
    gives mass to, read as offset tags; the teacher from `teacher_scores` at temperature T."""
    out = []
    names = scores.relation_names
    t = temperature
    for b, n in enumerate(scores.lengths.tolist()):
        arcs = scores.arcs[b].double() / t
        sib = getattr(scores, "sib_scores", None)
        sib = scores.siblings if sib is None else sib
        sib = None if sib is None else sib[b].double() / t
        if arc_marginals == "local":
            col = torch.log_softmax(arcs[:n + 1, :n + 1].masked_fill(torch.eye(n + 1, dtype=torch.bool), float("-inf")),
                                    0)
            structures = [(h, sum(col[h[i], i + 1] for i in range(n))) for h in head_assignments(n)]
        elif case_cfg.get("inference") == "mfvi":
            q = torch.log(mfvi_loop(arcs, sib, n, 3))
            structures = [(h, sum(q[h[i], i + 1] for i in range(n))) for h in head_assignments(n)]
        else:
            trees, logp = tree_distribution(arcs, sib, n, scores.projective)
            structures = list(zip(trees, logp))
        rel_logp = torch.log_softmax(scores.relations[b].double() / t, -1)
        logp_s = torch.log_softmax(emissions[b].double() / t, -1)
        total = torch.zeros((), dtype=torch.float64)
        for heads, lp in structures:
            for rels in itertools.product(range(len(names)), repeat=n):
                lp_all = lp + sum(rel_logp[heads[i], i + 1, rels[i]] for i in range(n))
                if not torch.isfinite(lp_all):
                    continue
                y = [tags.index(f"{heads[i] - (i + 1)}_{names[rels[i]]}") for i in range(n)]
                total = total - lp_all.exp() * sum(logp_s[i, y[i]] for i in range(n))
        out.append(t ** 2 * total)
    return torch.stack(out)


@pytest.mark.parametrize("name", list(TEACHERS))
@pytest.mark.parametrize("temperature, mode", [(1.0, "local"), (2.0, "global")])
def test_kd_loss_equals_enumerated_cross_entropy(name, temperature, mode):
    case, cfg, arc_marginals = TEACHERS[name]
    corpus = tiny_corpus()
    teacher = randomize(parser(corpus, relations=tiny_relations(), dim=6, **cfg), seed=5)
    tags = Dictionary(add_unk=True)
    for o in range(-3, 4):
        for r in RELATIONS:
            if o:
                tags.add_item(f"{o}_{r}")
    model = student(corpus, tags, seed=6, dim=5).eval()
    sentences = [Sentence(["a", "b", "c"]), Sentence(["d"]), Sentence(["b", "a"])]
    objective = StructuralKD(temperature=temperature, temperature_mode=mode, arc_marginals=arc_marginals)
    scores = teacher.teacher_scores(sentences)
    for s in sentences:
        s.clear_embeddings()
    with torch.no_grad():
        features, lengths = model._features(sentences)
    want = enumerated_kd(scores, features, model.label_names, cfg, arc_marginals, temperature)
    # the objective on float64 scores: exact
    targets = objective.targets(scores, model.label_names, "maxent")
    assert float(targets.dropped_mass.max()) < 1e-12
    got = objective.loss(model.chain_scores(features.double(), lengths), targets)
    torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)
    # the whole path: annotate (cached float32 targets) -> sentence metadata -> the student's forward_loss
    cached = annotate(teacher, sentences, model, objective, cache_dir=False, progress=False, threshold=0.0)
    for s in sentences:
        s.add_metadata(KD_TARGETS, cached.piece(s))
        s.add_metadata(UNLABELLED, True)
    model.kd_objective, model.kd_weight = cached.build_objective(), 1.0
    with torch.no_grad():
        loss, count = model.forward_loss(sentences)
    assert count == 6
    assert float(loss) == pytest.approx(float(want.sum()), rel=1e-5, abs=1e-5)
