"""The factorised parsing student (one softmax over head offsets, one over relations): its structural KD loss
from first- and second-order parser teachers against enumeration, lost mass, and the Flair student."""
import copy
import itertools

import flair
import pytest
import torch
from flair.data import Dictionary, Sentence
from flair.embeddings import OneHotEmbeddings
from flair.trainers import ModelTrainer

from skd_flair.distill import StructuralKD
from skd_flair.distill.labels import LabelMismatchError
from skd_flair.distill.offset_relation import arcs_to_offsets_and_relations, split_labels
from skd_flair.models.dependency_eval import is_well_formed
from skd_flair.models.dependency_tagger import DependencyTagger, make_tag_dictionary
from skd_flair.models.factorised_parser import FactorisedDependencyTagger
from skd_flair.training.annotate import annotate
from skd_flair.training.plugin import DistillationPlugin
from tests import toy
from tests.parsing import RELATIONS, parser, randomize, small_corpus, tiny_corpus, tiny_relations, tree_distribution

TEACHERS = {"1b": dict(objective="crf"), "2b": dict(second_order=True, projective=True)}


def student(corpus, tags, seed=0, dim=8, **kw):
    torch.manual_seed(seed)
    emb = OneHotEmbeddings.from_corpus(corpus, embedding_length=dim, min_freq=1)
    return FactorisedDependencyTagger(emb, tags, hidden_size=8, **kw)


def _head(head):
    """The student's arguments: plain factorised (False), head-aware relations (True), and head-aware offsets too
    ("offsets")."""
    return {"head_relations": True, "head_offsets": head == "offsets"} if head else {}


def tiny_tags(offsets=range(-3, 4)):
    tags = Dictionary(add_unk=True)
    for o in offsets:
        for r in RELATIONS:
            if o:
                tags.add_item(f"{o}_{r}")
    return tags


def enumerated_kd(scores, logp_o, logp_r, offsets, relations, projective, temperature):
    """``-sum_y P_t(y) sum_i [log p_i(o_i) + log p_i(r_i)]`` per sentence, over every labelled tree y."""
    out = []
    t = temperature
    for b, n in enumerate(scores.lengths.tolist()):
        sib = None if scores.siblings is None else scores.siblings[b].double() / t
        trees, logp_tree = tree_distribution(scores.arcs[b].double() / t, sib, n, projective)
        rel_logp = torch.log_softmax(scores.relations[b].double() / t, -1)
        names = scores.relation_names
        total = torch.zeros((), dtype=torch.float64)
        for heads, lp in zip(trees, logp_tree):
            for rels in itertools.product(range(len(names)), repeat=n):
                p = (lp + sum(rel_logp[heads[i], i + 1, rels[i]] for i in range(n))).exp()
                student = 0.0
                for i in range(n):
                    o, r = offsets.index(heads[i] - (i + 1)), relations.index(names[rels[i]])
                    # a head-aware student's relation softmax is the one of word i's head: [B, N, K, R]
                    student = student + logp_o[b, i, o] + (logp_r[b, i, o, r] if logp_r.dim() == 4 else
                                                           logp_r[b, i, r])
                total = total - p * student
        out.append(t ** 2 * total)
    return torch.stack(out)


@pytest.mark.parametrize("head", [False, True, "offsets"], ids=["offset_relation", "head_aware", "head_offsets"])
@pytest.mark.parametrize("case", list(TEACHERS))
@pytest.mark.parametrize("temperature, mode", [(1.0, "local"), (2.0, "global")])
def test_factorised_kd_loss_equals_enumerated_cross_entropy(case, temperature, mode, head):
    corpus = tiny_corpus()
    teacher = randomize(parser(corpus, relations=tiny_relations(), dim=6, **TEACHERS[case]), seed=5)
    model = student(corpus, tiny_tags(), seed=6, dim=5, **_head(head)).eval()
    sentences = [Sentence(["a", "b", "c"]), Sentence(["d"]), Sentence(["b", "a"])]
    objective = StructuralKD(temperature=temperature, temperature_mode=mode)
    scores = teacher.teacher_scores(sentences)
    for s in sentences:
        s.clear_embeddings()
    with torch.no_grad():
        features, lengths = model._features(sentences)
    student_scores = model.chain_scores(features.double(), lengths)
    logp_o, logp_r = student_scores.log_probs(temperature)
    want = enumerated_kd(scores, logp_o, logp_r, model.offsets, model.relations, scores.projective, temperature)
    targets = objective.targets(scores, model.label_names, model.kd_factorisation)
    assert float(targets.dropped_mass.max()) < 1e-12
    torch.testing.assert_close(objective.loss(student_scores, targets), want, atol=1e-9, rtol=1e-9)
    # the whole path: annotate (cached float32 targets) -> sentence metadata -> the student's forward_loss
    cached = annotate(teacher, sentences, model, objective, cache_dir=False, progress=False, threshold=0.0)
    toy.attach_targets(sentences, cached)
    model.kd_objective, model.kd_weight = cached.build_objective(), 1.0
    with torch.no_grad():
        loss, count = model.forward_loss(sentences)
    assert count == 6 and float(loss) == pytest.approx(float(want.sum()), rel=1e-5)
    # the per-batch diagnostics: KL from the teacher's offset marginals to the student's offset softmax
    q, mask = targets.offsets, student_scores.mask
    kl = torch.where(q > 0, q * (q.log() - logp_o), torch.zeros(())).sum(-1)[mask].sum()
    assert model.kd_stats["kl_sum"] == pytest.approx(float(kl), rel=1e-4, abs=1e-6)


def test_head_aware_targets_refuse_local_tempering_and_lose_mass_visibly():
    from skd_flair.distill.head_relation import arcs_to_head_relations, head_labels

    corpus = tiny_corpus()
    teacher = randomize(parser(corpus, relations=tiny_relations(), dim=6), seed=7)
    model = student(corpus, tiny_tags(), head_relations=True)
    scores = teacher.teacher_scores([Sentence(["a", "b", "c"])])
    with pytest.raises(ValueError, match="temperature_mode 'global'"):
        StructuralKD(temperature=2.0).targets(scores, model.label_names, model.kd_factorisation)
    m = scores.marginals()
    narrow = arcs_to_head_relations(m, head_labels([-1, 1], ["root", "nsubj"]))
    # kept: heads at offsets -1 and +1 (word 1's -1 is ROOT) with relations root or nsubj; the rest is dropped
    joint = m.arcs[0].unsqueeze(-1) * m.relations[0][..., [m.relation_names.index("root"),
                                                            m.relation_names.index("nsubj")]]
    for d in (1, 2, 3):
        kept = sum(joint[h, d].sum() for h in (d - 1, d + 1) if 0 <= h <= 3)
        assert float(narrow.dropped_mass[0, d - 1]) == pytest.approx(1.0 - float(kept), abs=1e-9)
    torch.testing.assert_close(narrow.offsets.sum(-1), torch.ones(1, 3, dtype=torch.float64))
    # the words' relation mass is the heads' expected dependents plus ROOT's (word 1 at offset -1), which has no
    # head row
    torch.testing.assert_close(narrow.relations.sum((1, 2)), narrow.head_relations.sum((1, 2)) +
                               narrow.offsets[:, 0, 0])
    with pytest.raises(LabelMismatchError, match="no column"):
        arcs_to_head_relations(m, head_labels([-1, 1], ["root", "nsubj"]), unknown="error")


def test_offsets_and_relations_the_student_lacks_lose_their_mass_visibly():
    corpus = tiny_corpus()
    teacher = randomize(parser(corpus, relations=tiny_relations(), dim=6), seed=7)
    scores = teacher.teacher_scores([Sentence(["a", "b", "c"])])
    marginals = scores.marginals()
    full = ["@-3", "@-2", "@-1", "@1", "@2", "@3", "root", "nsubj", "obj"]
    narrow = ["@-1", "@1", "root", "nsubj"]
    lost = arcs_to_offsets_and_relations(marginals, narrow, unknown="renormalize")
    kept = arcs_to_offsets_and_relations(marginals, full)
    # what is lost is the teacher's mass on offsets -3, -2, 2, 3 plus its mass on "obj"
    want = kept.offsets[..., [0, 1, 4, 5]].sum(-1) + kept.relations[..., 2]
    torch.testing.assert_close(lost.dropped_mass, want)
    torch.testing.assert_close(lost.offsets.sum(-1), torch.ones(1, 3, dtype=torch.float64))
    with pytest.raises(LabelMismatchError, match="no column"):
        arcs_to_offsets_and_relations(marginals, narrow, unknown="error")
    with pytest.raises(LabelMismatchError, match="unk"):
        arcs_to_offsets_and_relations(marginals, full, unknown="unk")
    assert split_labels(full) == ([-3, -2, -1, 1, 2, 3], ["root", "nsubj", "obj"])


@pytest.mark.parametrize("head", [False, True, "offsets"], ids=["offset_relation", "head_aware", "head_offsets"])
def test_gold_loss_is_the_two_softmaxes_negative_log_likelihood(head):
    corpus = small_corpus(n_train=8, n_dev=2, n_test=2)
    tags = make_tag_dictionary(corpus)
    model = student(corpus, tags, seed=1, **_head(head)).eval()
    sentences = list(corpus.train)[:3]
    with torch.no_grad():
        loss, count = model.forward_loss(sentences)
        ordered = sorted(sentences, key=len, reverse=True)
        features, lengths = model._features(ordered)
        logp_o, logp_r = model.chain_scores(features, lengths).log_probs()
    want = 0.0
    for b, s in enumerate(ordered):
        for i, token in enumerate(s):
            o, r = token.head_id - (i + 1), token.get_label("dependency").value
            k, rel = model.offsets.index(o), model.relations.index(r)
            want -= float(logp_o[b, i, k] + (logp_r[b, i, k, rel] if head else logp_r[b, i, rel]))
    assert count == sum(len(s) for s in sentences) and float(loss) == pytest.approx(want, rel=1e-5)
    columns = len(model.offsets) * (2 if head == "offsets" else 1) + len(model.relations) * (2 if head else 1)
    assert len(model.label_names) == columns and (head or columns < len(model.tag_names))
    if head:  # the relation softmax moves with the head: the head part of another word changes it
        with torch.no_grad():
            features, lengths = model._features(ordered)
            parts = slice(len(model.offsets) + len(model.relations), len(model.offsets) + 2 * len(model.relations))
            features[..., parts] += torch.randn_like(features[..., parts])
            _, moved = model.chain_scores(features, lengths).log_probs()
        assert not torch.allclose(moved, logp_r)
    if head == "offsets":  # and so do a word's offset logits: word 2's head columns move word 1's offset at +1
        with torch.no_grad():
            features, lengths = model._features(ordered)
            features[:, 1, -len(model.offsets):] += 5.0 * torch.arange(len(model.offsets))
            moved, _ = model.chain_scores(features, lengths).log_probs()
        k = model.offsets.index(1)
        assert float((moved[:, 0, k] - logp_o[:, 0, k]).abs().min()) > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("head", [False, True, "offsets"], ids=["offset_relation", "head_aware", "head_offsets"])
def test_factorised_student_learns_from_a_parser_saves_loads_and_parses(tmp_path, head):
    corpus = small_corpus()
    teacher = randomize(parser(corpus, seed=2, dim=10), seed=3, scale=0.3)
    model = student(corpus, make_tag_dictionary(corpus), seed=4, **_head(head))
    targets = annotate(teacher, corpus.train, model, {"type": "structural", "temperature": 2.0,
                                                      "temperature_mode": "global" if head else "local"},
                       progress=False)
    plugin = DistillationPlugin(targets, mix={"type": "constant", "weight": 0.5})
    result = ModelTrainer(model, corpus).train(tmp_path, max_epochs=2, mini_batch_size=8, learning_rate=0.1,
                                               plugins=[plugin], save_final_model=True)
    assert result["test_score"] == pytest.approx(model.evaluate(corpus.test).main_score, abs=1e-9)
    assert plugin.history[-1]["KD_LOSS"] < plugin.history[0]["KD_LOSS"]
    model.eval()
    kept = tmp_path / "best-model.pt"  # the model the trainer ends with (epoch 2 did not improve dev here)
    for loaded in (DependencyTagger.load(kept), flair.nn.Model.load(kept)):
        assert type(loaded) is FactorisedDependencyTagger and loaded.label_names == model.label_names
        assert loaded.head_relations == bool(head) and loaded.head_offsets == (head == "offsets")
        ours, theirs = copy.deepcopy(list(corpus.test)), copy.deepcopy(list(corpus.test))
        model.predict(ours)
        loaded.predict(theirs)
        assert [[t.head_id for t in s] for s in ours] == [[t.head_id for t in s] for s in theirs]
        assert all(is_well_formed([t.head_id for t in s]) for s in ours)
    # the fast path (and so ONNX export) refuses it in one line; the Flair-format export keeps it a parser
    from skd_flair.models.fast_tagger import FastTagger, UnsupportedTagger
    from skd_flair.training.export import export_model

    with pytest.raises(UnsupportedTagger, match="factorised"):
        FastTagger(model)
    export_model(kept, tmp_path / "exported.pt", quantize="int8")
    exported, ours = DependencyTagger.load(tmp_path / "exported.pt"), copy.deepcopy(list(corpus.test))
    exported.predict(ours)
    assert type(exported) is FactorisedDependencyTagger and all(is_well_formed([t.head_id for t in s]) for s in ours)
    with pytest.raises(LabelMismatchError, match="factorised"):
        plain = DependencyTagger(OneHotEmbeddings.from_corpus(corpus, embedding_length=8, min_freq=1),
                                 make_tag_dictionary(corpus), hidden_size=8)
        ModelTrainer(plain, corpus).train(tmp_path / "wrong", max_epochs=1, mini_batch_size=8,
                                          plugins=[DistillationPlugin(targets)])


@pytest.mark.parametrize("head", [False, True, "offsets"], ids=["offset_relation", "head_aware", "head_offsets"])
@pytest.mark.parametrize("repair", ["mst", "eisner"])
def test_factorised_trees_equal_the_tag_paths(repair, head):
    """The factorised decoder (head mass from the two softmaxes) gives the tag path's trees, relations and
    scores: `decode_offset_tags` over every (offset, relation) tag of the dictionary."""
    from skd_flair.models.offset_tags import decode_offset_tags

    corpus = small_corpus(n_train=30, n_dev=2, n_test=12)
    tags = make_tag_dictionary(corpus)
    sentences = sorted(list(corpus.train)[:24] + list(corpus.test), key=len, reverse=True)
    checked = set()
    for seed in range(3):
        model = randomize(student(corpus, tags, seed=seed, **_head(head)), seed=seed, scale=2.0).eval()
        with torch.no_grad():
            scores = model._scores(sentences)
            fast = model._trees(scores, repair, probabilities=True)
            slow = decode_offset_tags(model.tag_log_probs(scores), scores.lengths, model.codec, repair,
                                      probabilities=True)
        for (h1, r1, p1), (h2, r2, p2) in zip(fast, slow):
            assert h1 == h2 and r1 == r2
            assert p1 == pytest.approx(p2, rel=1e-6, abs=1e-12)
            checked.update(r1)
    assert len(checked) > 3  # several relations were chosen, so the relation step was exercised


@pytest.mark.parametrize("words", [0, 10 ** 9], ids=["offset-loop", "gathered"])
@pytest.mark.parametrize("head", [True, "offsets"], ids=["head_aware", "head_offsets"])
def test_paired_relation_mass_sums_the_full_relation_softmax(words, head, monkeypatch):
    """Both paths of the decoder's per-(word, offset) mass equal the allowed relations' probabilities summed from
    the full ``[B, N, K, R]`` softmax, wherever the head at that offset is in the sentence."""
    from skd_flair.distill.head_relation import HeadRelationScores

    monkeypatch.setattr(HeadRelationScores, "gather_up_to_words", words)
    corpus = small_corpus(n_train=30, n_dev=2, n_test=12)
    model = randomize(student(corpus, make_tag_dictionary(corpus), **_head(head)), seed=3, scale=2.0).eval()
    sentences = list(corpus.test) + list(corpus.train)[:5]
    with torch.no_grad():
        scores = model._scores(sentences)
        scores = HeadRelationScores(scores.emissions.double(), scores.lengths, scores.labels)  # float64 reference
        pairs = model._pairs(torch.device("cpu"))[0]
        got = scores.paired_relation_mass(pairs)
        _, logp_r = scores.log_probs()
    expected = (logp_r.double().exp() * pairs.double()).sum(-1)  # [B, N, K]
    _, inside = scores.heads()
    checked = inside & pairs.any(1)
    assert checked.sum() > 100 and (expected[checked] < 0.99).any()  # partial masses, not all 0 or 1
    torch.testing.assert_close(got[checked], expected[checked], rtol=1e-9, atol=1e-12)
