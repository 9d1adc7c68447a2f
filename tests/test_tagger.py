"""The Flair glue of DistillableTagger: exact CRF, true marginals, KD term, save/load, hub ids."""
import copy

import flair
import pytest
import torch
from flair.data import Sentence
from flair.models import SequenceTagger

from skd_flair.distill import OBJECTIVES
from skd_flair.distill.batching import collate_targets, split_targets
from skd_flair.models import KD_TARGETS, UNLABELLED, DistillableTagger
from tests import brute, toy


@pytest.fixture(scope="module")
def corpus():
    return toy.corpus()


def as_plain_flair(model: DistillableTagger) -> SequenceTagger:
    plain = SequenceTagger(model.embeddings, copy.deepcopy(model.label_dictionary), "ner", use_crf=model.use_crf,
                           hidden_size=model.hidden_size, init_from_state_dict=True)
    plain.load_state_dict(model.state_dict())
    return plain.eval()


def test_crf_gold_loss_and_viterbi_equal_flairs(corpus):
    model = toy.tagger(corpus, use_crf=True).eval()
    with torch.no_grad():
        model.crf.transitions.normal_()  # trained-looking transitions, not only the init
    plain = as_plain_flair(model)
    batch = toy.sentences(16, seed=0)
    with torch.no_grad():
        ours, n = model.forward_loss(batch)
        theirs, m = plain.forward_loss(batch)
    assert n == m and ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    a, b = toy.sentences(16, seed=0), toy.sentences(16, seed=0)
    model.predict(a, label_name="p", force_token_predictions=True)
    plain.predict(b, label_name="p", force_token_predictions=True)
    for x, y in zip(a, b):
        assert [t.get_label("p", "O").value for t in x] == [t.get_label("p", "O").value for t in y]


@pytest.mark.parametrize("use_crf", [True, False])
def test_predict_stores_true_marginals(corpus, use_crf):
    model = toy.tagger(corpus, use_crf=use_crf).eval()
    sentence = Sentence(["Anna", "went", "to"])
    model.predict(sentence, return_probabilities_for_all_classes=True)
    with torch.no_grad():
        features, lengths = model._features([sentence])
        scores = model.chain_scores(features, lengths)
    n, names = len(sentence), model.label_names
    if use_crf:
        ys, table = brute.chain_table(scores.emissions[0].double(), scores.transitions.double(),
                                      scores.start.double(), scores.end.double(), n)
        p = torch.softmax(table, 0)
        want = torch.zeros(n, len(names), dtype=torch.float64)
        for y, py in zip(ys, p):
            for t in range(n):
                want[t, y[t]] += py
    else:
        want = torch.softmax(scores.emissions[0].double(), -1)
    for t, token in enumerate(sentence):
        got = {label.value: label.score for label in token.tags_proba_dist["ner"]}
        assert sum(got.values()) == pytest.approx(1.0, abs=1e-5)
        for j, name in enumerate(names):
            assert got[name] == pytest.approx(want[t, j].item(), abs=1e-5)


def test_caller_dictionary_is_never_mutated(corpus):
    tags = corpus.make_label_dictionary("ner", add_unk=False)
    before = tags.get_items()
    toy.tagger(corpus, use_crf=True)
    DistillableTagger(toy.tagger(corpus).embeddings, tags, "ner", use_crf=True, hidden_size=4)
    assert tags.get_items() == before


@pytest.mark.parametrize("use_crf, bidirectional", [(True, True), (False, False)])
def test_save_load_round_trip_every_loader(corpus, tmp_path, use_crf, bidirectional):
    model = toy.tagger(corpus, use_crf=use_crf, bidirectional=bidirectional,
                       kd_objective={"type": "structural", "temperature": 3.0, "temperature_mode": "global"})
    path = tmp_path / "student.pt"
    model.save(path)
    sentences = [Sentence([t.text for t in s]) for s in list(corpus.test)[:5]]
    model.eval().predict(sentences, return_probabilities_for_all_classes=True)
    want = [[(t.get_label("ner", "O").value, [l.score for l in t.tags_proba_dist["ner"]]) for t in s]
            for s in sentences]
    for loader in (DistillableTagger.load, flair.nn.Model.load, flair.nn.Classifier.load):
        loaded = loader(path)
        assert type(loaded) is DistillableTagger
        assert loaded.bidirectional == bidirectional and loaded.use_crf == use_crf
        assert loaded.kd_objective.config() == model.kd_objective.config()
        again = [Sentence([t.text for t in s]) for s in sentences]
        loaded.predict(again, return_probabilities_for_all_classes=True)
        got = [[(t.get_label("ner", "O").value, [l.score for l in t.tags_proba_dist["ner"]]) for t in s]
               for s in again]
        assert [[x[0] for x in s] for s in got] == [[x[0] for x in s] for s in want]
        for gs, ws in zip(got, want):
            for g, w in zip(gs, ws):
                assert g[1] == pytest.approx(w[1], abs=1e-6)


def test_hub_id_loads_from_a_prepopulated_flair_cache(corpus, tmp_path, monkeypatch):
    from skd_flair.training.hub import install_in_flair_cache

    model = toy.tagger(corpus)
    model.save(tmp_path / "model.pt")
    monkeypatch.setattr(flair, "cache_root", tmp_path / "flair_cache")
    install_in_flair_cache(tmp_path / "model.pt", "someone/skd-student")
    loaded = DistillableTagger.load("someone/skd-student")
    assert type(loaded) is DistillableTagger
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())


def attach(model, sentences, objective, teacher):
    scores = teacher.teacher_scores(sentences)
    targets = objective.targets(scores, model.label_names, model.kd_factorisation)
    for s, piece in zip(sentences, split_targets(targets)):
        s.add_metadata(KD_TARGETS, piece)


@pytest.mark.parametrize("student_crf", [True, False])
def test_forward_loss_mixes_the_objective_loss_and_the_gold_loss(corpus, student_crf):
    teacher = toy.tagger(corpus, use_crf=True, seed=1).eval()
    objective = OBJECTIVES.build({"type": "structural", "temperature": 2.0})
    model = toy.tagger(corpus, use_crf=student_crf, kd_objective=objective).eval()
    batch = sorted(toy.sentences(8, seed=5), key=len, reverse=True)
    gold_only, _ = model.forward_loss(batch)
    attach(model, batch, objective, teacher)
    with torch.no_grad():
        features, lengths = model._features(batch)
        scores = model.chain_scores(features, lengths)
        kd = objective.loss(scores, collate_targets([s.get_metadata(KD_TARGETS) for s in batch], model.label_names))
    model.kd_weight = 0.3
    mixed, _ = model.forward_loss(batch)
    assert mixed.item() == pytest.approx(0.3 * kd.sum().item() + 0.7 * gold_only.item(), rel=1e-5)
    assert model.kd_stats["tokens"] == int(lengths.sum())
    for s in batch[:3]:
        s.add_metadata(UNLABELLED, True)
    unl = torch.tensor([s.has_metadata(UNLABELLED) for s in batch])
    with torch.no_grad():
        gold = model._gold_loss(scores, model._gold_tags(batch, features.shape[1]))
    partly, _ = model.forward_loss(batch)
    want = torch.where(unl, kd, 0.3 * kd + 0.7 * gold).sum()
    assert partly.item() == pytest.approx(want.item(), rel=1e-5)


def test_batches_without_complete_targets_are_refused(corpus):
    teacher = toy.tagger(corpus, seed=1)
    objective = OBJECTIVES.build("structural")
    model = toy.tagger(corpus, kd_objective=objective)
    batch = toy.sentences(4, seed=6)
    attach(model, batch[:2], objective, teacher)
    with pytest.raises(ValueError, match="some sentences"):
        model.forward_loss(batch)
    bare = toy.sentences(2, seed=7)
    bare[0].add_metadata(UNLABELLED, True)
    with pytest.raises(ValueError, match="unlabelled"):
        model.forward_loss(bare)


def test_empty_sentences_have_no_loss_and_no_prediction(corpus):
    model = toy.tagger(corpus)
    batch = toy.sentences(3, seed=8)
    with_empty = toy.sentences(3, seed=8) + [Sentence([])]
    assert model.eval().forward_loss(with_empty)[0].item() == pytest.approx(model.forward_loss(batch)[0].item())
    assert model.forward_loss([Sentence([])])[1] == 0
    model.predict([Sentence([]), Sentence(["Anna"])])
