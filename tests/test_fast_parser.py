"""The parsing students' fast path (``fast_predict`` on a DependencyTagger): the same trees, relations and scores
as ``predict``."""

import numpy as np
import pytest
import torch
from flair.data import Sentence
from flair.embeddings import CharacterEmbeddings, StackedEmbeddings, WordEmbeddings

from skd_flair.models.dependency_tagger import DependencyTagger, make_tag_dictionary
from skd_flair.models.factorised_parser import FactorisedDependencyTagger
from skd_flair.models.fast_tagger import fast_predict
from skd_flair.training.embeddings import char_dictionary
from tests.parsing import randomize, small_corpus


def _embeddings(corpus, tmp_path):
    from gensim.models import KeyedVectors

    words = sorted({t.text for s in corpus.train for t in s})[:-3]  # a few words only the chars know
    kv = KeyedVectors(vector_size=6)
    kv.add_vectors(words, np.random.default_rng(0).normal(size=(len(words), 6)).astype(np.float32))
    kv.save(str(tmp_path / "tiny.kv"))
    chars = CharacterEmbeddings(path_to_char_dict=char_dictionary(corpus), char_embedding_dim=4, hidden_size_char=3)
    return StackedEmbeddings([WordEmbeddings(str(tmp_path / "tiny.kv"), name="tiny"), chars])


@pytest.mark.parametrize("cls, repair", [(FactorisedDependencyTagger, "mst"), (FactorisedDependencyTagger, "eisner"),
                                         (DependencyTagger, "mst")])
def test_fast_parse_writes_what_predict_writes(cls, repair, tmp_path):
    corpus = small_corpus(n_train=30, n_dev=2, n_test=12)
    torch.manual_seed(0)
    model = cls(_embeddings(corpus, tmp_path), make_tag_dictionary(corpus), hidden_size=8, repair=repair)
    model = randomize(model, seed=1, scale=1.5)
    texts = [[t.text for t in s] for s in list(corpus.test) + list(corpus.train)[:10]] + [["unseen", "Words", "x"]]
    ours, theirs = [Sentence(list(t)) for t in texts], [Sentence(list(t)) for t in texts]
    model.predict(ours, mini_batch_size=4)
    fast_predict(model, theirs, mini_batch_size=4)
    for a, b in zip(ours, theirs):
        assert [t.head_id for t in a] == [t.head_id for t in b]
        assert [t.get_label("dependency").value for t in a] == [t.get_label("dependency").value for t in b]
        assert np.allclose([t.get_label("dependency").score for t in a],
                           [t.get_label("dependency").score for t in b], atol=1e-5)
    assert len({t.get_label("dependency").value for s in ours for t in s}) > 2
    assert not model.training
