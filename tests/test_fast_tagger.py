"""The fast inference path (skd_flair.models.fast_tagger) writes what DistillableTagger.predict writes."""
import copy

import numpy as np
import pytest
import torch
from flair.data import Sentence
from flair.embeddings import CharacterEmbeddings, StackedEmbeddings, WordEmbeddings

from skd_flair.models import DistillableTagger, FastTextSubwordEmbeddings
from skd_flair.models.char_embeddings import BatchedCharacterEmbeddings
from skd_flair.models.fast_tagger import FastTagger, UnsupportedTagger, char_sources, fast_predict
from skd_flair.training.embeddings import char_dictionary
from tests import toy

# OOV words, digits (reach "####" / "0000" rows), case forms, unknown characters, repeated tokens of different
# lengths (Flair's char reordering quirk), a single token, empty sentences, mixed lengths
TEXTS = [
    "Anna went to Berlin", "ANNA went TO berlin", "anna saw bob in paris", "Paris", "Zürich", "",
    "in Berlin in Paris in", "a the a", "Acme Inc saw Acme Inc and the a", "Carla visited Rome 2024 with Globex",
    "12 3.5 1999 x7 Q4-2021", "Xyzzy Plugh went to Frobozz", "the", "", "with with with Bob",
    "from Rome to Paris and from Paris to Rome with Anna and Bob and Carla in 2020",
    "Globex Globex Inc Inc", "Ω ∆ ünïcödé Anna", "a b c d e f g h i j k l m n o p q r s t u v w x y z",
]


def sentences():
    return [Sentence(text.split()) if text else Sentence("") for text in TEXTS]


@pytest.fixture(scope="module")
def corpus():
    return toy.corpus()


@pytest.fixture(scope="module")
def kv_path(tmp_path_factory, corpus):
    from gensim.models import KeyedVectors

    words = sorted({t.text for s in corpus.train for t in s} - {"Paris", "Rome"}
                   | {"paris", "rome", "####", "0000", "#.#", "berlin", "x#"})
    kv = KeyedVectors(vector_size=6)
    kv.add_vectors(words, np.random.default_rng(0).normal(size=(len(words), 6)).astype(np.float32))
    path = tmp_path_factory.mktemp("vectors") / "tiny.kv"
    kv.save(str(path))
    return path


CHAR_CLASSES = {"flair": CharacterEmbeddings, "batched": BatchedCharacterEmbeddings}


def chars(corpus, name="Char", kind="flair"):
    return CHAR_CLASSES[kind](path_to_char_dict=char_dictionary(corpus), char_embedding_dim=4, hidden_size_char=3,
                              name=name)


def make(corpus, embeddings, seed=0, **kw):
    torch.manual_seed(seed)
    model = DistillableTagger(embeddings, corpus.make_label_dictionary("ner", add_unk=False), "ner",
                              hidden_size=5, **kw)
    with torch.no_grad():  # a random model predicts O everywhere; sharpen its emissions so spans appear
        model.linear.weight.mul_(20)
    return model.eval()


def labels(sentence, label_type="ner"):
    return [(label.data_point.unlabeled_identifier, label.value, label.score)
            for label in sentence.get_labels(label_type)]


def assert_same_predictions(model, batch_size=4, **kw):
    slow, fast = sentences(), sentences()
    model.predict(slow, mini_batch_size=batch_size, **kw)
    fast_predict(model, fast, mini_batch_size=batch_size, **kw)
    found, label_type = 0, kw.get("label_name") or "ner"
    for a, b in zip(slow, fast):
        la, lb = labels(a, label_type), labels(b, label_type)
        assert [x[:2] for x in la] == [x[:2] for x in lb], a.to_tokenized_string()
        assert np.allclose([x[2] for x in la], [x[2] for x in lb], atol=1e-5)
        found += len(la)
        if kw.get("return_probabilities_for_all_classes"):
            for ta, tb in zip(a, b):
                pa, pb = ta.tags_proba_dist["ner"], tb.tags_proba_dist["ner"]
                assert [p.value for p in pa] == [p.value for p in pb]
                assert np.allclose([p.score for p in pa], [p.score for p in pb], atol=1e-5)
    assert found > 3  # the comparison saw real labels
    return slow, fast


STUDENTS = {
    "crf": dict(),
    "maxent": dict(use_crf=False),
    "crf_bio_gru2_noreproject": dict(tag_format="BIO", rnn_type="GRU", rnn_layers=2, reproject_embeddings=False),
    "maxent_unidirectional": dict(use_crf=False, bidirectional=False),
    "crf_no_rnn": dict(use_rnn=False),
}


@pytest.mark.parametrize("char_kind", sorted(CHAR_CLASSES))
@pytest.mark.parametrize("kind", sorted(STUDENTS))
def test_same_tags_spans_and_scores_as_predict(corpus, kv_path, kind, char_kind):
    model = make(corpus, StackedEmbeddings([WordEmbeddings(str(kv_path), name="tiny"), chars(corpus, kind=char_kind)]),
                 **STUDENTS[kind])
    assert_same_predictions(model)
    assert_same_predictions(model, batch_size=1)


def test_token_labels_and_all_class_probabilities(corpus, kv_path):
    model = make(corpus, StackedEmbeddings([WordEmbeddings(str(kv_path), name="tiny"), chars(corpus)]))
    assert_same_predictions(model, force_token_predictions=True, return_probabilities_for_all_classes=True)
    assert_same_predictions(make(corpus, chars(corpus), use_crf=False), label_name="other")


@pytest.mark.parametrize("char_kind", sorted(CHAR_CLASSES))
def test_embeddings_and_emissions_match_flair(corpus, kv_path, char_kind):
    """Flair's lookup rules and its char-embedding reordering quirk (absent from the batched class), position by
    position."""
    word = WordEmbeddings(str(kv_path), name="tiny", stable=True)
    model = make(corpus, StackedEmbeddings([word, chars(corpus, kind=char_kind)]))
    fast = FastTagger.from_tagger(model)
    batch = sorted(sentences()[:5] + sentences()[6:13], key=len, reverse=True)
    with torch.no_grad():
        flair_x, lengths = model._prepare_tensors(batch)
        ids = fast.tensorize([[t.text for t in s] for s in batch])
        ours = fast.embed(ids.word_ids, ids.char_ids, ids.char_index)
        mask = torch.arange(ours.shape[1]) < lengths.unsqueeze(1)
        assert torch.allclose(ours[mask], flair_x[mask], atol=1e-6)
        flair_em = model.forward(flair_x, lengths)[mask]
        assert torch.allclose(fast.emissions(*ids)[mask], flair_em, atol=1e-5)
        per_position = fast.tensorize([[t.text for t in s] for s in batch], unique=False)
        assert per_position.char_ids.dim() == 3 and per_position.char_index is None
        assert torch.allclose(fast.emissions(*per_position)[mask], flair_em, atol=1e-5)
    flair_x, _ = model._prepare_tensors([Sentence("a the a".split())])
    if char_kind == "batched":  # each token its own characters: both "a" get one vector
        assert torch.equal(flair_x[0, 0], flair_x[0, 2]) and not torch.equal(flair_x[0, 0, 6:], flair_x[0, 1, 6:])
        return
    # "a the a": the first "a" is not the last of its characters, so Flair gives it the embedding at sorted
    # position 0, the token "the"; in "in Berlin in Paris in" the first "in" gets Berlin's (sorted position 0)
    assert char_sources([(1,), (2, 3, 4), (1,)]) == [1, 1, 2]
    assert char_sources([(1, 2), (3, 4, 5, 6, 7, 8), (1, 2), (9, 4, 10, 11, 12), (1, 2)]) == [1, 1, 0, 3, 4]
    assert torch.equal(flair_x[0, 0, 6:], flair_x[0, 1, 6:]) and not torch.equal(flair_x[0, 0], flair_x[0, 2])


def test_fasttext_table_with_oov_ngrams(corpus):
    from gensim.models import FastText

    texts = [[t.text for t in s] for s in corpus.train]
    ft = FastText(texts, vector_size=6, min_count=1, epochs=1, min_n=2, max_n=3, bucket=300, workers=1, seed=1)
    model = make(corpus, StackedEmbeddings([FastTextSubwordEmbeddings.from_gensim(ft.wv, name="ft"),
                                            chars(corpus)]))
    assert_same_predictions(model)


def test_weight_changes_rebuild_the_cached_fast_tagger(corpus, kv_path):
    model = make(corpus, StackedEmbeddings([WordEmbeddings(str(kv_path), name="tiny"), chars(corpus)]))
    assert_same_predictions(model)
    with torch.no_grad():
        model.linear.bias.add_(torch.linspace(-3, 3, model.linear.bias.numel()))
        model.crf.transitions.mul_(0.5)
    assert_same_predictions(model)


def test_tensor_interface_returns_best_tag_ids(corpus, kv_path):
    model = make(corpus, StackedEmbeddings([WordEmbeddings(str(kv_path), name="tiny"), chars(corpus)]))
    fast = FastTagger.from_tagger(model)
    words = [["Anna", "went", "to", "Berlin"], ["Paris"]]
    batch = fast.tensorize(words, unique=False)
    assert batch.word_ids.shape == (2, 4, 1) and batch.char_ids.shape == (2, 4, 6) and batch.lengths.tolist() == [4, 1]
    tags = fast(batch.word_ids[..., 0], batch.char_ids, batch.lengths)
    assert tags.shape == (2, 4) and tags[1, 1:].tolist() == [-1, -1, -1]
    unique = fast.tensorize(words + [["Paris", "went"]])
    assert unique.char_ids.shape == (5, 6) and unique.char_index.tolist() == [[2, 3, 4, 0], [1, 0, 0, 0], [1, 3, 0, 0]]
    assert torch.equal(fast(*unique)[:2], tags)
    assert fast.tag(words + [[]]) == [[fast.label_names[t] for t in row[:n]] for row, n in
                                      zip(tags.tolist(), (4, 1))] + [[]]


def test_unsupported_models_are_refused_in_one_line(corpus, kv_path):
    for model, word in ((toy.tagger(corpus), "OneHotEmbeddings"),):
        with pytest.raises(UnsupportedTagger, match=word) as error:
            fast_predict(model, sentences())
        assert "\n" not in str(error.value)
    from skd_flair.models.quantize import quantize_layers

    model = copy.deepcopy(make(corpus, StackedEmbeddings([WordEmbeddings(str(kv_path), name="tiny"),
                                                          chars(corpus)])))
    quantize_layers(model)
    with pytest.raises(UnsupportedTagger, match="float") as error:
        FastTagger.from_tagger(model)
    assert "\n" not in str(error.value)


def test_numpy_decoding_equals_linear_chain_crf_and_flair_spans():
    import random

    from flair.data import get_spans_from_bio

    from skd_flair.tagging_runtime import crf_marginals, spans_from_bio, viterbi
    from skd_flair.structs import LinearChainCRF

    gen = torch.Generator().manual_seed(0)
    for k, n in ((3, 1), (5, 7), (9, 12)):
        em = torch.randn(6, n, k, generator=gen) * 3
        trans = torch.randn(k, k, generator=gen)
        start, end = torch.randn(k, generator=gen), torch.randn(k, generator=gen)
        trans[:, 0] = -10000.0  # Flair's sentinels: a label nothing transitions into
        lengths = torch.tensor([n, 1, max(1, n - 1), max(1, n // 2), n, 1])
        crf = LinearChainCRF(em, trans, lengths, start, end)
        args = (em.numpy(), lengths.numpy(), trans.numpy(), start.numpy(), end.numpy())
        assert np.array_equal(viterbi(*args), crf.argmax.numpy())
        assert np.allclose(crf_marginals(*args), crf.marginals.double().numpy(), atol=1e-5)
        sharp = (em * 400).numpy(), *args[1:]  # score gaps far beyond the range of exp
        sharp_crf = LinearChainCRF(em * 400, trans, lengths, start, end)
        assert np.allclose(crf_marginals(*sharp), sharp_crf.marginals.double().numpy(), atol=1e-5)
    trans = torch.zeros(3, 3)
    trans[2] = -10000.0  # nothing leaves label 2, which dominates the first position: exp space underflows
    em = torch.zeros(1, 3, 3)
    em[0, 0, 2] = 2000.0
    zeros, lengths = torch.zeros(3), torch.tensor([3])
    expected = LinearChainCRF(em, trans, lengths, zeros, zeros).marginals.double().numpy()
    assert np.allclose(crf_marginals(em.numpy(), lengths.numpy(), trans.numpy(), zeros.numpy(), zeros.numpy()),
                       expected, atol=1e-6)
    rng = random.Random(0)
    tags = ["O", "B-X", "I-X", "E-X", "S-X", "B-Y", "I-Y", "E-Y", "S-Y", "_", ""]
    for _ in range(500):
        seq = [rng.choice(tags) for _ in range(rng.randint(0, 8))]
        scores = [rng.random() for _ in seq]
        assert spans_from_bio(seq, scores) == get_spans_from_bio(list(seq), list(scores))
        assert spans_from_bio(seq) == get_spans_from_bio(list(seq))


def test_speed_report_measures_the_fast_path_of_a_student_file(corpus, kv_path, tmp_path):
    from skd_flair.training.speed import speed_report

    model = make(corpus, StackedEmbeddings([WordEmbeddings(str(kv_path), name="tiny"), chars(corpus, kind="batched")]))
    model.save(tmp_path / "student.pt")
    texts = [text.split() for text in TEXTS if text]
    report = speed_report([tmp_path / "student.pt"], texts, batch_sizes=[2], isolate=False)
    row = report[str(tmp_path / "student.pt")]
    assert set(row["predict"]) == set(row["fast_predict"]) == {"batch_2"}
    assert row["size_mb"] == round((tmp_path / "student.pt").stat().st_size / 2 ** 20, 2)
    with pytest.raises(ValueError, match="no non-empty sentences"):
        speed_report([tmp_path / "student.pt"], [[]], isolate=False)


@pytest.mark.slow  # a fresh process imports Flair
def test_speed_report_peak_memory_is_the_measuring_process_own(corpus, kv_path, tmp_path):
    from skd_flair.training.speed import speed_report

    model = make(corpus, StackedEmbeddings([WordEmbeddings(str(kv_path), name="tiny"), chars(corpus, kind="batched")]))
    model.save(tmp_path / "student.pt")
    ballast = torch.ones(500_000_000)  # 2 GB resident in this process, which the measuring child must not report
    ballast[::1024] = 2.0
    row = speed_report([tmp_path / "student.pt"], [t.split() for t in TEXTS if t], batch_sizes=[2])[
        str(tmp_path / "student.pt")]
    del ballast
    assert 0 < row["peak_rss_mb"] < 1900, row
