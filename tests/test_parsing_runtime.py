"""The numpy tree decoding of exported parsing students (``skd_flair.parsing_runtime``): Eisner against
enumeration, and ``OffsetTreeDecoder`` against the students' own decoding (``DependencyTagger._trees``)."""

import functools

import numpy as np
import pytest
import torch

from skd_flair.models.dependency_tagger import DependencyTagger, make_tag_dictionary
from skd_flair.models.factorised_parser import FactorisedDependencyTagger
from skd_flair.models.fast_parser import parser_config
from skd_flair.parsing_runtime import OffsetTreeDecoder, _HeadRelations, eisner_heads
from skd_flair.structs import DependencyTree
from tests import brute
from tests.parsing import randomize, small_corpus


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_eisner_heads_is_the_best_single_root_projective_tree(n):
    trees = brute.trees(n, projective=True, single_root=True)
    rng = np.random.default_rng(n)
    for trial in range(30):
        s = rng.normal(size=(n + 1, n + 1)) * (3 if trial % 2 else 0.5)
        best = max(trees, key=lambda t: sum(s[h, d] for d, h in enumerate(t, start=1)))
        heads = eisner_heads(s)
        assert heads[0] == -1 and tuple(heads[1:].tolist()) == best, (trial, s)


def test_eisner_heads_agrees_with_the_torch_decoder_on_longer_sentences():
    rng = np.random.default_rng(7)
    for n in (9, 17, 30):
        s = rng.normal(size=(n + 1, n + 1)) * 2
        torch_heads = DependencyTree(torch.tensor(s)[None], torch.tensor([n]), projective=True).argmax[0]
        assert eisner_heads(s)[1:].tolist() == torch_heads[1:].tolist()


HEAD_AWARE = functools.partial(FactorisedDependencyTagger, head_relations=True)
HEAD_OFFSETS = functools.partial(FactorisedDependencyTagger, head_relations=True, head_offsets=True)


LOOP, GATHER = 0, 10 ** 9  # a head-aware student's offset mass: per offset, or gathered (few sentences)


@pytest.mark.parametrize("cls, repair, gather", [
    (FactorisedDependencyTagger, "mst", LOOP), (FactorisedDependencyTagger, "eisner", LOOP),
    (HEAD_AWARE, "mst", LOOP), (HEAD_AWARE, "eisner", LOOP), (HEAD_AWARE, "mst", GATHER),
    (HEAD_OFFSETS, "mst", LOOP), (HEAD_OFFSETS, "eisner", LOOP), (HEAD_OFFSETS, "eisner", GATHER),
    (DependencyTagger, "mst", LOOP), (DependencyTagger, "eisner", LOOP)],
    ids=["factorised-mst", "factorised-eisner", "head_aware-mst", "head_aware-eisner", "head_aware-mst-gathered",
         "head_offsets-mst", "head_offsets-eisner", "head_offsets-eisner-gathered", "tags-mst", "tags-eisner"])
def test_offset_tree_decoder_decodes_as_the_student_does(cls, repair, gather, monkeypatch):
    monkeypatch.setattr(_HeadRelations, "gather_per_offset", gather)
    corpus = small_corpus(n_train=30, n_dev=2, n_test=12)
    from flair.embeddings import OneHotEmbeddings

    torch.manual_seed(0)
    embeddings = OneHotEmbeddings.from_corpus(corpus, embedding_length=6, min_freq=1)
    for seed, scale in ((1, 1.5), (2, 0.4)):
        model = randomize(cls(embeddings, make_tag_dictionary(corpus), hidden_size=8, repair=repair), seed, scale)
        model.eval()
        decoder = OffsetTreeDecoder(parser_config(model))
        batch = list(corpus.test) + list(corpus.train)[:6]
        with torch.no_grad():
            features, lengths = model._features(batch)
            expected = model._trees(model.chain_scores(features, lengths), repair, probabilities=True)
        got = decoder.decode(features.numpy(), lengths.tolist())
        relations = set()
        for (eh, er, ep), (gh, gr, gp) in zip(expected, got):
            assert gh == eh
            assert gr == [r if r is not None else "dep" for r in er]
            assert np.allclose(gp, ep, atol=1e-5)
            relations |= set(gr)
        assert len(relations) > 2  # not one relation everywhere: the relation step is exercised


def test_parser_config_refuses_a_heuristic_repair_in_one_line():
    corpus = small_corpus(n_train=8, n_dev=2, n_test=2)
    from flair.embeddings import OneHotEmbeddings

    from skd_flair.models.fast_tagger import UnsupportedTagger

    model = DependencyTagger(OneHotEmbeddings.from_corpus(corpus, embedding_length=4), make_tag_dictionary(corpus),
                             hidden_size=4, repair="top3")
    with pytest.raises(UnsupportedTagger, match="mst or eisner") as info:
        parser_config(model)
    assert "\n" not in str(info.value)
