"""BatchedCharacterEmbeddings: Flair's character embeddings in one LSTM call per batch, without Flair's
reordering of repeated words."""
import flair
import pytest
import torch
from flair.data import Sentence
from flair.embeddings import CharacterEmbeddings

from skd_flair.models.char_embeddings import BatchedCharacterEmbeddings
from skd_flair.training.embeddings import char, char_dictionary
from tests import toy


@pytest.fixture(scope="module")
def corpus():
    return toy.corpus()


def pair(corpus):
    torch.manual_seed(0)
    flair_chars = CharacterEmbeddings(path_to_char_dict=char_dictionary(corpus), char_embedding_dim=5,
                                      hidden_size_char=4)
    batched = BatchedCharacterEmbeddings(path_to_char_dict=flair_chars.char_dictionary, char_embedding_dim=5,
                                         hidden_size_char=4)
    batched.load_state_dict(flair_chars.state_dict())
    return flair_chars.train(), batched.train()


def embed(embeddings, texts):
    sentences = [Sentence(text.split()) for text in texts]
    embeddings.embed(sentences)
    return torch.stack([t.get_embedding() for s in sentences for t in s])


NO_REPEATS = ["Anna went to Berlin", "Paris", "Acme Inc saw Globex", "Zürich ünïcödé x", "a bb ccc dddd"]


def test_same_vectors_and_gradients_as_flair_without_repeated_words(corpus):
    flair_chars, batched = pair(corpus)
    a, b = embed(flair_chars, NO_REPEATS), embed(batched, NO_REPEATS)
    assert torch.allclose(a, b, atol=1e-6)
    weights = torch.randn_like(a)
    (a * weights).sum().backward()
    (b * weights).sum().backward()
    for (name, p), q in zip(flair_chars.named_parameters(), batched.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name


def test_a_repeated_word_gets_its_own_vector_where_flair_reorders(corpus):
    flair_chars, batched = pair(corpus)
    text = "in Berlin in Paris in"
    ours, theirs = embed(batched, [text]), embed(flair_chars, [text])
    alone = embed(flair_chars, ["in"])[0]
    for position in (0, 2, 4):
        assert torch.allclose(ours[position], alone, atol=1e-6)
    # Flair hands the first "in" Berlin's vector (sorted position 0): the quirk this class does not copy
    assert torch.allclose(theirs[0], embed(flair_chars, ["Berlin"])[0], atol=1e-6)
    assert torch.allclose(ours[[1, 3]], theirs[[1, 3]], atol=1e-6)


def test_one_batch_equals_sentence_by_sentence(corpus):
    _, batched = pair(corpus)
    texts = NO_REPEATS + ["with with with Bob", "Globex Globex Inc Inc"]
    together = embed(batched, texts)
    apart = torch.cat([embed(batched, [text]) for text in texts])
    assert torch.allclose(together, apart, atol=1e-6)


def test_config_builds_it_and_a_saved_tagger_loads_it_back(corpus, tmp_path):
    from skd_flair.models import DistillableTagger

    chars = char(corpus, char_embedding_dim=5, hidden_size_char=4)
    assert type(chars) is BatchedCharacterEmbeddings
    tagger = DistillableTagger(chars, corpus.make_label_dictionary("ner", add_unk=False), "ner", hidden_size=6)
    tagger.save(tmp_path / "tagger.pt")
    loaded = flair.nn.Model.load(tmp_path / "tagger.pt")
    assert type(loaded.embeddings) is BatchedCharacterEmbeddings
    texts = ["in Berlin in Paris in", "Anna"]
    assert torch.equal(embed(tagger.embeddings.eval(), texts), embed(loaded.embeddings.eval(), texts))
