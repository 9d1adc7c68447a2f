"""NER as parsing (case 4): the biaffine span tagger as a Flair model and as a teacher of a MaxEnt BIOES tagger.

Exactness (decoding, structured loss, the KD loss through `teacher_scores`) is checked against enumeration of
every span set on tiny sentences; the Flair glue (ModelTrainer, save/load, evaluate, KD on labelled and
unlabelled sentences, label mismatches) on the toy corpus.
"""
import flair
import pytest
import torch
from flair.data import Sentence
from flair.embeddings import OneHotEmbeddings
from flair.trainers import ModelTrainer

from skd_flair.distill import LabelMismatchError, StructuralKD
from skd_flair.distill.scores import ChainScores
from skd_flair.distill.span_scores import SpanScores, SpanTokenMarginals
from skd_flair.models import UNLABELLED, DistillableTagger
from skd_flair.models.span_ner import BiaffineSpanTagger
from skd_flair.structs import StructureInputError
from skd_flair.structs.spans import LabelledSpans
from skd_flair.training.annotate import annotate
from skd_flair.training.plugin import DistillationPlugin
from tests import brute, toy

WIDTH = 3
TINY = [["Anna", "went", "to", "Paris"], ["Acme", "Inc"], ["Bob"], ["the", "Globex", "Inc", "saw", "Rome"]]


@pytest.fixture(scope="module")
def corpus():
    return toy.corpus(n_train=40)


def span_tagger(corpus, seed=0, dim=8, hidden=16, mlp=16, **kw):
    torch.manual_seed(seed)
    types = corpus.make_label_dictionary("ner", add_unk=False)
    emb = OneHotEmbeddings.from_corpus(corpus, embedding_length=dim, min_freq=1)
    kw.setdefault("max_width", WIDTH)
    return BiaffineSpanTagger(emb, types, "ner", hidden_size=hidden, mlp_size=mlp, word_dropout=0.0,
                              locked_dropout=0.0, mlp_dropout=0.0, **kw)


def train(model, corpus, path, epochs=2, plugins=(), adam=False):
    kwargs = dict(max_epochs=epochs, mini_batch_size=8, plugins=list(plugins), save_final_model=True,
                  embeddings_storage_mode="none")  # trainable one-hot vectors must not be cached on dev sentences
    if adam:
        kwargs.update(optimizer=torch.optim.Adam, learning_rate=1e-2)
    else:
        kwargs.update(learning_rate=0.1)
    return ModelTrainer(model, corpus).train(path, **kwargs)


@pytest.fixture(scope="module")
def teacher(corpus, tmp_path_factory):
    model = span_tagger(corpus, seed=3, objective="structured")
    train(model, corpus, tmp_path_factory.mktemp("span_teacher"), epochs=12, adam=True)
    return model.eval()


def spans_of(sentence, label_type):
    return sorted((lab.data_point.tokens[0].idx - 1, lab.data_point.tokens[-1].idx - 1, lab.value)
                  for lab in sentence.get_labels(label_type))


def tiny():
    return [Sentence(list(words)) for words in TINY]


def relative(model, sentences):
    with torch.no_grad():
        logits, lengths = model.span_logits(sentences)
    return model.relative_scores(logits).double(), lengths


def set_score(rel_b, spans):
    return sum((rel_b[i, j, e] for i, j, e in spans), rel_b.new_zeros(()))


# ---------------------------------------------------------------------- training and the Flair glue
@pytest.mark.slow
@pytest.mark.parametrize("objective", ["span", "structured"])
def test_trains_through_model_trainer_and_learns(corpus, tmp_path, objective):
    model = span_tagger(corpus, seed=1, objective=objective)
    result = train(model, corpus, tmp_path, epochs=12, adam=True)
    assert (tmp_path / "final-model.pt").exists() and (tmp_path / "best-model.pt").exists()
    assert result["test_score"] > 0.3  # the toy entities are easy; an untrained model scores about 0
    loss, count = model.forward_loss(list(corpus.train)[:8])
    assert count == sum(len(s) for s in list(corpus.train)[:8]) and torch.isfinite(loss)


@pytest.mark.slow
def test_save_load_round_trip_predicts_identically(teacher, tmp_path):
    teacher.save(tmp_path / "span.pt")
    for loader in (BiaffineSpanTagger.load, flair.nn.Model.load, flair.nn.Classifier.load):
        loaded = loader(tmp_path / "span.pt")
        assert type(loaded) is BiaffineSpanTagger
        assert (loaded.type_names, loaded.max_width, loaded.objective, loaded.label_type, loaded.mlp_size) == \
            (teacher.type_names, teacher.max_width, teacher.objective, teacher.label_type, teacher.mlp_size)
        for (ka, a), (kb, b) in zip(loaded.state_dict().items(), teacher.state_dict().items()):
            assert ka == kb and torch.equal(a.cpu(), b.cpu())
        a, b = toy.sentences(12, seed=21), toy.sentences(12, seed=21)
        teacher.predict(a, return_probabilities_for_all_classes=True)
        loaded.predict(b, return_probabilities_for_all_classes=True)
        got = [[(lab.unlabeled_identifier, lab.value, lab.score) for lab in s.get_labels("ner")] for s in b]
        want = [[(lab.unlabeled_identifier, lab.value, lab.score) for lab in s.get_labels("ner")] for s in a]
        assert got == want and any(got)
        assert [t.tags_proba_dist["ner"][0].score for s in b for t in s] == \
            [t.tags_proba_dist["ner"][0].score for s in a for t in s]


@pytest.mark.slow
def test_hub_id_loads_from_a_prepopulated_flair_cache(teacher, tmp_path, monkeypatch):
    from skd_flair.training.hub import install_in_flair_cache

    teacher.save(tmp_path / "span.pt")
    monkeypatch.setattr(flair, "cache_root", tmp_path / "flair_cache")
    install_in_flair_cache(tmp_path / "span.pt", "someone/span-teacher")
    loaded = BiaffineSpanTagger.load("someone/span-teacher")
    assert type(loaded) is BiaffineSpanTagger and loaded.type_names == teacher.type_names


@pytest.mark.parametrize("trained", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_predictions_are_flat_spans_within_max_width_and_flair_evaluate_scores_them(corpus, request, trained):
    model = request.getfixturevalue("teacher") if trained else span_tagger(corpus, seed=5, max_width=2)
    if not trained:  # an untrained model with large scores predicts many (and long) candidate spans
        with torch.no_grad():
            model.biaffine.weight.mul_(20.0)
    sentences = list(corpus.test)
    model.predict(sentences, label_name="predicted")
    found = 0
    for s in sentences:
        spans = spans_of(s, "predicted")
        found += len(spans)
        for (i, j, _), (k, _, _) in zip(spans, spans[1:]):
            assert j < k  # sorted by start and non-overlapping
        assert all(0 <= i <= j < len(s) and j - i + 1 <= model.max_width for i, j, _ in spans)
        assert all(lab.value in model.type_names and 0.0 < lab.score <= 1.0 for lab in s.get_labels("predicted"))
    assert found > 0
    result = model.evaluate(sentences, gold_label_type="ner")
    # Flair's number is exact-match typed span micro-F1: recompute it from the predictions
    gold = {(n, span) for n, s in enumerate(sentences) for span in spans_of(s, "ner")}
    pred = {(n, span) for n, s in enumerate(sentences) for span in spans_of(s, "predicted")}
    tp = len(gold & pred)
    f1 = 2 * tp / (len(gold) + len(pred)) if gold or pred else 0.0
    assert result.main_score == pytest.approx(f1, abs=1e-4)
    assert result.scores["loss"] == result.scores["loss"]  # finite eval loss, no NaN


@pytest.mark.parametrize("max_width", [None, 1, 2])
def test_decoding_is_the_best_span_set_by_enumeration(corpus, max_width):
    model = span_tagger(corpus, seed=7, max_width=max_width).eval()
    with torch.no_grad():
        model.biaffine.weight.mul_(5.0)
    sentences = tiny()
    rel, lengths = relative(model, sentences)
    model.predict(sentences, label_name="predicted")
    for b, s in enumerate(sentences):
        n = len(s)
        sets = brute.span_sets(n, len(model.type_names), max_width or n)
        scores = torch.stack([set_score(rel[b], y) for y in sets])
        best = sets[int(scores.argmax())]
        got = [(i, j, model.type_names.index(v)) for i, j, v in spans_of(s, "predicted")]
        assert float(set_score(rel[b], got)) == pytest.approx(float(scores.max()), abs=1e-9)
        assert sorted(got) == sorted(best)
        # each predicted span's score is its marginal probability under the span-set model
        p = torch.softmax(scores, 0)
        for lab in s.get_labels("predicted"):
            i, j = lab.data_point.tokens[0].idx - 1, lab.data_point.tokens[-1].idx - 1
            e = model.type_names.index(lab.value)
            want = sum(float(py) for y, py in zip(sets, p) if (i, j, e) in y)
            assert lab.score == pytest.approx(want, abs=1e-5)


def gold_tiny():
    sentences = tiny()
    sentences[0][0:1].add_label("ner", "PER")
    sentences[0][3:4].add_label("ner", "LOC")
    sentences[1][0:2].add_label("ner", "ORG")
    sentences[3][1:3].add_label("ner", "ORG")
    sentences[3][4:5].add_label("ner", "LOC")
    return sentences


def test_structured_loss_is_the_enumerated_negative_log_likelihood(corpus):
    model = span_tagger(corpus, seed=8, objective="structured").eval()
    sentences = gold_tiny()
    rel, _ = relative(model, sentences)
    with torch.no_grad():
        loss, count = model.forward_loss(sentences)
    want = 0.0
    for b, s in enumerate(sentences):
        sets = brute.span_sets(len(s), len(model.type_names), WIDTH)
        table = torch.stack([set_score(rel[b], y) for y in sets])
        gold = [(i, j, model.type_names.index(v)) for i, j, v in spans_of(s, "ner")]
        want += float(torch.logsumexp(table, 0) - set_score(rel[b], gold))
    assert count == sum(len(s) for s in sentences)
    assert float(loss) == pytest.approx(want, rel=1e-5)


def test_span_loss_is_the_cross_entropy_of_every_candidate_span(corpus):
    model = span_tagger(corpus, seed=9, objective="span").eval()
    sentences = gold_tiny()
    with torch.no_grad():
        loss, _ = model.forward_loss(sentences)
        logits, _ = model.span_logits(sentences)
    want = 0.0
    for b, s in enumerate(sentences):
        gold = {(i, j): model.type_names.index(v) + 1 for i, j, v in spans_of(s, "ner")}
        for i in range(len(s)):
            for j in range(i, min(len(s), i + WIDTH)):
                want -= float(torch.log_softmax(logits[b, i, j].double(), 0)[gold.get((i, j), 0)])
    assert float(loss) == pytest.approx(want, rel=1e-5)


def test_unlabelled_and_over_wide_gold_spans_are_not_learned(corpus, caplog):
    model = span_tagger(corpus, seed=9, max_width=1).eval()
    s = Sentence(["Acme", "Inc", "saw", "Bob"])
    s[0:2].add_label("ner", "ORG")  # wider than max_width
    s[3:4].add_label("ner", "PER")
    assert model._gold_spans(s, structured=True) == [(3, 3, model.type_names.index("PER"))]
    assert "max_width" in caplog.text
    u = Sentence(["Bob", "saw", "Rome"])
    u.add_metadata(UNLABELLED, True)
    loss, count = model.forward_loss([u])
    assert count == 0 and float(loss.detach()) == 0.0


# ---------------------------------------------------------------------- KD: exact against enumeration
def student_tagger(corpus, seed=4, tag_format="BIOES", **kw):
    torch.manual_seed(seed)
    tags = corpus.make_label_dictionary("ner", add_unk=False)
    emb = OneHotEmbeddings.from_corpus(corpus, embedding_length=8, min_freq=1)
    return DistillableTagger(emb, tags, "ner", use_crf=False, tag_format=tag_format, hidden_size=8, **kw)


def bio(tags):
    return [{"S": "B", "E": "I"}.get(t[0], t[0]) + t[1:] if t != "O" else t for t in tags]


def enumerated_kd(rel, lengths, student_logp, names, type_names, max_width, temperature, tags_of=lambda t: t):
    """-T^2 sum_Y P_t(Y) log P_s(tags(Y)) per sentence, teacher at scores / T, student softmax at emissions / T."""
    out = []
    for b, n in enumerate(lengths.tolist()):
        sets = brute.span_sets(n, len(type_names), max_width or n)
        pt = torch.softmax(torch.stack([set_score(rel[b], y) for y in sets]) / temperature, 0)
        logp = student_logp[b]
        ce = 0.0
        for y, py in zip(sets, pt):
            tags = tags_of(brute.bioes(y, n, type_names))
            ce = ce - py * sum(logp[m, names.index(tag)] for m, tag in enumerate(tags))
        out.append(temperature ** 2 * ce)
    return torch.stack(out)


@pytest.mark.parametrize("mode, temperature, max_width", [("local", 1.0, WIDTH), ("global", 2.0, WIDTH),
                                                         ("global", 0.5, None)])
@pytest.mark.parametrize("tag_format", ["BIOES", "BIO"])
def test_kd_loss_through_teacher_scores_equals_enumerated_cross_entropy(corpus, mode, temperature, max_width,
                                                                       tag_format):
    teacher = span_tagger(corpus, seed=11, max_width=max_width)
    with torch.no_grad():
        teacher.biaffine.weight.mul_(4.0)
    student = student_tagger(corpus, tag_format=tag_format).eval()
    sentences = tiny()
    rel, lengths = relative(teacher, sentences)
    scores = teacher.teacher_scores(sentences)
    assert isinstance(scores, SpanScores) and not scores.spans.requires_grad
    assert teacher.training  # teacher_scores restores the mode it found
    objective = StructuralKD(temperature=temperature, temperature_mode=mode)
    targets = objective.targets(scores, student.label_names, "maxent")
    with torch.no_grad():
        features, student_lengths = student._features(sentences)
    emissions = features.double().requires_grad_(True)
    student_scores = ChainScores(emissions, student_lengths, student.label_names)
    loss = objective.loss(student_scores, targets)
    logp = torch.log_softmax(emissions / temperature, -1)
    want = enumerated_kd(rel, lengths, logp, student.label_names, teacher.type_names, max_width, temperature,
                         bio if tag_format == "BIO" else (lambda t: t))
    torch.testing.assert_close(loss, want, atol=1e-9, rtol=0)
    w = torch.linspace(0.5, 1.5, len(loss), dtype=torch.float64)
    got_g, = torch.autograd.grad((loss * w).sum(), emissions, retain_graph=True)
    want_g, = torch.autograd.grad((want * w).sum(), emissions)
    torch.testing.assert_close(got_g, want_g, atol=1e-9, rtol=0)


def test_students_forward_loss_from_annotated_targets_equals_enumeration(corpus):
    teacher = span_tagger(corpus, seed=12)
    student = student_tagger(corpus, kd_objective={"type": "structural", "temperature": 2.0,
                                                   "temperature_mode": "global"}).eval()
    sentences = tiny()
    targets = annotate(teacher, sentences, student, student.kd_objective, progress=False)
    toy.attach_targets(sentences, targets)
    with torch.no_grad():
        loss, _ = student.forward_loss(sentences)
        features, lengths = student._features(sentences)
    rel, _ = relative(teacher.eval(), sentences)
    logp = torch.log_softmax(features.double() / 2.0, -1)
    want = enumerated_kd(rel, lengths, logp, student.label_names, teacher.type_names, WIDTH, 2.0).sum()
    assert float(loss) == pytest.approx(float(want), rel=1e-5)


def test_span_scores_marginals_are_the_bioes_token_marginals():
    g = torch.Generator().manual_seed(0)
    spans = torch.randn(2, 5, 5, 2, generator=g)
    scores = SpanScores(spans, torch.tensor([5, 3]), ["PER", "LOC"], max_width=2)
    m = scores.marginals(2.0)
    assert isinstance(m, SpanTokenMarginals) and m.probs.dtype == torch.float64 and not m.independent
    assert m.labels == LabelledSpans.bioes_tags(["PER", "LOC"])
    want = LabelledSpans(spans.double() / 2.0, torch.tensor([5, 3]), 2).token_marginals
    torch.testing.assert_close(m.probs, want, atol=0, rtol=0)
    assert scores.decode() == [[(i, j, ["PER", "LOC"][e]) for i, j, e in y]
                               for y in LabelledSpans(spans.double(), torch.tensor([5, 3]), 2).decode()]
    with pytest.raises(StructureInputError, match="type names"):
        SpanScores(spans, torch.tensor([5, 3]), ["PER"])
    with pytest.raises(StructureInputError, match="cannot name"):
        SpanScores(spans, torch.tensor([5, 3]), ["PER", "O"])


# ---------------------------------------------------------------------- KD through ModelTrainer
@pytest.mark.slow
def test_kd_through_model_trainer_on_labelled_sentences(corpus, teacher, tmp_path):
    student = student_tagger(corpus)
    targets = annotate(teacher, corpus.train, student, {"type": "structural", "temperature": 2.0}, progress=False)
    plugin = DistillationPlugin(targets, mix={"type": "annealed", "factor": 10.0})
    result = train(student, corpus, tmp_path, epochs=2, plugins=[plugin])
    assert "test_score" in result and len(plugin.history) == 2
    row = plugin.history[-1]
    assert row["KD_LOSS"] > 0 and row["GOLD_LOSS"] > 0 and 0.0 <= row["ARGMAX_AGREEMENT"] <= 1.0
    loaded = DistillableTagger.load(tmp_path / "final-model.pt")
    assert loaded.kd_objective.config()["temperature"] == 2.0


@pytest.mark.slow
def test_kd_through_model_trainer_on_unlabelled_sentences(corpus, teacher, tmp_path):
    unlabelled = toy.corpus(n_train=30, seed=11)
    for s in unlabelled.train:
        s.add_metadata(UNLABELLED, True)
        s.remove_labels("ner")
    student = student_tagger(corpus, seed=6)  # the tag dictionary of the teacher's corpus
    targets = annotate(teacher, unlabelled.train, student, {"type": "structural", "temperature": 2.0},
                       progress=False)
    plugin = DistillationPlugin(targets)
    train(student, unlabelled, tmp_path, epochs=2, plugins=[plugin])
    assert plugin.history[-1]["GOLD_LOSS"] == 0.0 and plugin.history[-1]["KD_LOSS"] > 0


# ---------------------------------------------------------------------- label mismatches
def test_label_set_mismatches_are_clear_errors(corpus):
    teacher = span_tagger(corpus, seed=13)
    extra = toy.corpus(types={**toy.NAMES, "Berlin": "GPE"})  # the student has GPE, the teacher does not
    with pytest.raises(LabelMismatchError, match="student only \\['GPE'\\]"):
        annotate(teacher, corpus.train, student_tagger(extra), "structural", progress=False)
    fewer = toy.corpus(types={k: v for k, v in toy.NAMES.items() if v != "ORG"})  # the teacher has ORG
    with pytest.raises(LabelMismatchError, match="teacher only \\['ORG'\\]"):
        annotate(teacher, corpus.train, student_tagger(fewer), "structural", progress=False)
    crf = toy.tagger(corpus, use_crf=True)  # no exact map from a span teacher to a CRF student
    with pytest.raises(LabelMismatchError, match="MaxEnt student"):
        annotate(teacher, corpus.train, crf, "structural", progress=False)
    scores = teacher.teacher_scores(tiny())
    with pytest.raises(LabelMismatchError, match="not a BIO/BIOES tag"):
        StructuralKD().targets(scores, ["O", "PER", "LOC", "ORG"], "maxent")
    with pytest.raises(LabelMismatchError, match="neither BIOES nor BIO"):
        StructuralKD().targets(scores, [t for t in scores.labels if t != "E-PER"], "maxent")
