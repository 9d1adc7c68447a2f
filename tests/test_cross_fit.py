"""Which sentences each teacher annotates when cross-fitting (``provenance.cross_fit_shares``)."""
import pytest
from flair.data import Sentence

from skd_flair.registry import ConfigError
from skd_flair.training.cache import sentence_key
from skd_flair.training.provenance import cross_fit_shares


def _sentences(n):
    return [Sentence(f"sentence number {i} here") for i in range(n)]


def test_each_teacher_gets_the_sentences_it_never_trained_on_and_every_teacher_the_repeats():
    sentences = _sentences(30)
    keys = [sentence_key(s) for s in sentences]
    repeat = keys[0]  # a dateline both halves hold
    first, second = set(keys[:15]), set(keys[15:]) | {repeat}
    shares = cross_fit_shares([first, second], sentences)
    assert [s.to_plain_string() for s in shares[0]] == [s.to_plain_string() for s in [sentences[0], *sentences[15:]]]
    assert [s.to_plain_string() for s in shares[1]] == [s.to_plain_string() for s in sentences[:15]]
    # three teachers, each left out of one third: a sentence is taught by the two that never saw it
    thirds = [set(keys[i:i + 10]) for i in (0, 10, 20)]
    shares = cross_fit_shares(thirds, sentences)
    held = [sum(sentence_key(s) in {sentence_key(t) for t in share} for share in shares) for s in sentences]
    assert held == [2] * 30 and all(not {sentence_key(s) for s in share} & own for share, own in zip(shares, thirds))


def test_teachers_of_the_same_data_or_without_a_list_are_refused():
    sentences = _sentences(30)
    keys = {sentence_key(s) for s in sentences}
    with pytest.raises(ConfigError, match="30 of the 30 training sentences were in every teacher's training data"):
        cross_fit_shares([keys, keys], sentences)
    ordered = [sentence_key(s) for s in sentences]
    for repeats in (3, 4):  # up to 10% of the sentences in both teachers' data pass (every teacher annotates them)
        first, second = set(ordered[:15 + repeats]), set(ordered[15:])
        if repeats == 3:
            assert [len(share) for share in cross_fit_shares([first, second], sentences)] == [15, 18]
        else:
            with pytest.raises(ConfigError, match="4 of the 30 training sentences"):
                cross_fit_shares([first, second], sentences)
    with pytest.raises(ConfigError, match=r"teacher\[1\]: cross-fitting needs teachers that carry the list"):
        cross_fit_shares([keys, None], sentences)
