"""What a model's embeddings look like after loading and during training's evaluations.

Two Flair traps, both silent: a reloaded stack whose one-hot member lost its name concatenates its features in
another order (`skd_flair.models.embedding_names`), and with ``embeddings_storage_mode="cpu"`` the trainer
evaluates dev on the trainable embeddings it computed at epoch 1 (`skd_flair.training.fresh_embeddings`).
"""
from __future__ import annotations

import flair
import pytest
import torch
from flair.data import Sentence

from skd_flair.models import BiaffineSpanTagger, DistillableTagger
from skd_flair.models.embedding_names import restore_stack_names
from skd_flair.training.embeddings import build_embeddings
from skd_flair.training.fresh_embeddings import dynamic_embedding_names
from skd_flair.training.models import load_model
from skd_flair.training.pipeline import train_model
from tests import toy
from tests.test_cli import config, data  # noqa: F401  (the toy column corpus fixture)

STACK = [{"type": "onehot", "embedding_length": 6, "min_freq": 1},
         {"type": "char", "char_embedding_dim": 4, "hidden_size_char": 3}]


@pytest.fixture(scope="module")
def corpus():
    return toy.corpus(n_train=30, n_dev=8, n_test=8)


def _randomized(model):
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def _tagger(corpus, prefix=None):
    torch.manual_seed(0)
    tags = corpus.make_label_dictionary("ner", add_unk=False)
    return _randomized(DistillableTagger(build_embeddings(STACK, corpus, name_prefix=prefix), tags, "ner",
                                         use_crf=True, hidden_size=8))


def _span_tagger(corpus):
    torch.manual_seed(0)
    types = corpus.make_label_dictionary("ner", add_unk=False)
    return _randomized(BiaffineSpanTagger(build_embeddings(STACK, corpus), types, "ner", hidden_size=8, mlp_size=8,
                                          max_width=3))


def _features(model, texts):
    """The feature rows the model's network reads, in the model's own name order."""
    sentences = [Sentence(t) for t in texts]
    with torch.no_grad():
        model.embeddings.embed(sentences)
    names = model.embeddings.get_names()
    return torch.cat([torch.stack([t.get_embedding(names) for t in s]) for s in sentences])


def _texts(corpus):
    return [" ".join(t.text for t in s) for s in list(corpus.test)[:4]]


@pytest.mark.parametrize("build", [_tagger, _span_tagger], ids=["tagger", "span_ner"])
def test_a_saved_stack_with_a_one_hot_member_loads_with_its_feature_layout(corpus, tmp_path, build):
    model = build(corpus)
    assert model.embeddings.get_names() == ["0-one-hot-text", "1-Char"]
    model.save(tmp_path / "m.pt")
    loaded = type(model).load(tmp_path / "m.pt").eval()
    assert loaded.embeddings.get_names() == ["0-one-hot-text", "1-Char"]  # Flair alone: "one-hot-text" sorts last
    texts = _texts(corpus)
    assert torch.equal(_features(model, texts), _features(loaded, texts))


def test_a_reloaded_tagger_predicts_what_it_predicted_before_saving(corpus, tmp_path):
    model = _tagger(corpus)
    model.save(tmp_path / "m.pt")
    loaded = flair.nn.Model.load(tmp_path / "m.pt")
    before, after = [Sentence(t) for t in _texts(corpus)], [Sentence(t) for t in _texts(corpus)]
    model.predict(before, return_probabilities_for_all_classes=True, force_token_predictions=True)
    loaded.predict(after, return_probabilities_for_all_classes=True, force_token_predictions=True)
    for a, b in zip(before, after):
        for x, y in zip(a, b):
            assert x.get_label("ner").value == y.get_label("ner").value
            assert x.get_label("ner").score == pytest.approx(y.get_label("ner").score, abs=1e-6)


@pytest.mark.parametrize("prefix", [None, "teacher/"])
def test_a_file_saved_before_the_names_were_gets_its_training_order_back(corpus, prefix):
    model = _tagger(corpus, prefix)
    state = model._get_state_dict()
    del state["embedding_names"]  # what files written before this fix hold
    loaded = DistillableTagger._init_model_with_state_dict(state).eval()
    assert loaded.embeddings.get_names() == model.embeddings.get_names()
    texts = _texts(corpus)
    assert torch.equal(_features(model, texts), _features(loaded, texts))


def test_restoring_names_leaves_a_single_embedding_alone(corpus):
    single = build_embeddings(STACK[0], corpus)
    restore_stack_names(single, None)
    assert single.name == "one-hot-text"


def test_only_trainable_embeddings_count_as_dynamic(corpus):
    stack = build_embeddings(STACK, corpus)
    assert dynamic_embedding_names(stack) == ["0-one-hot-text", "1-Char"]
    stack.embeddings[0].static_embeddings = True  # e.g. frozen word vectors
    assert dynamic_embedding_names(stack) == ["1-Char"]


def test_dev_scores_during_training_are_those_of_the_model_at_that_epoch(data, tmp_path):  # noqa: F811
    """Trained with Flair's default storage mode ("cpu"), the last epoch's dev score equals a fresh evaluation of
    the model saved after that epoch; before the fix the dev sentences kept their epoch-1 character and one-hot
    vectors, and the score differed."""
    cfg = config(data, tmp_path / "run", model={
        "type": "tagger", "tag_type": "ner", "use_crf": True, "hidden_size": 8, "embeddings": STACK})
    cfg["trainer"].update(max_epochs=4, learning_rate=0.5, embeddings_storage_mode="cpu", save_final_model=True)
    result = train_model(cfg)
    final = load_model(str(tmp_path / "run" / "final-model.pt"), where="model")
    from skd_flair.training.corpora import load_corpus

    dev = load_corpus(cfg["corpus"]).dev
    fresh = final.evaluate(dev, gold_label_type="ner", mini_batch_size=8).main_score
    assert result["dev_score_history"][-1] == pytest.approx(fresh, abs=1e-9)
    assert len(set(result["dev_score_history"])) > 1  # the model changed between epochs
