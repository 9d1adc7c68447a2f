"""Length-bucketed training batches: every sentence once per epoch, full batches of near-equal lengths in a new
random order each epoch, and the trainer key that turns them on."""
import pickle

import pytest
import torch
from flair.data import Sentence
from flair.datasets import FlairDatapointDataset
from flair.trainers.plugins import TrainerPlugin

from skd_flair.training.length_buckets import LengthBucketSampler, padding_fraction
from skd_flair.training.pipeline import run_trainer
from tests import toy


def dataset(n=203, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 60, (n,), generator=g).tolist()
    return FlairDatapointDataset([Sentence(["w"] * k) for k in lengths]), lengths


def test_every_sentence_once_in_full_batches_of_similar_length():
    data, lengths = dataset()
    sampler = LengthBucketSampler(batch_size=8, window=5)
    sampler.set_dataset(data)
    torch.manual_seed(1)
    batches = sampler.batches()
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) == 8 for b in batches[:-1]) and 1 <= len(batches[-1]) <= 8
    torch.manual_seed(1)
    assert list(iter(sampler)) == [i for b in batches for i in b]  # the DataLoader cuts this order into them
    shuffled = torch.randperm(len(lengths)).tolist()
    plain = [shuffled[k:k + 8] for k in range(0, len(shuffled), 8)]
    assert padding_fraction(lengths, batches) < 0.5 * padding_fraction(lengths, plain)
    assert sampler.batches() != batches  # a new draw each epoch


def test_a_pickled_sampler_leaves_its_training_set_behind():
    # Flair pickles the trainer's arguments into each saved model: the sampler must not drag its dataset along
    data = FlairDatapointDataset([Sentence(["secret-training-word"] * k) for k in range(1, 40)])
    sampler = LengthBucketSampler(batch_size=8)
    sampler.set_dataset(data)
    blob = pickle.dumps(sampler)
    assert b"secret-training-word" not in blob
    copy = pickle.loads(blob)
    assert (copy.batch_size, copy.window) == (8, 50)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        LengthBucketSampler(batch_size=0)


class BatchLengths(TrainerPlugin):
    def __init__(self):
        super().__init__()
        self.batches = []

    @TrainerPlugin.hook
    def before_training_batch(self, batch, **kw):
        self.batches.append([len(s) for s in batch])


def test_the_trainer_key_buckets_training_batches(tmp_path):
    corpus = toy.corpus(n_train=48)
    spreads = {}
    for buckets in (False, True):
        seen = BatchLengths()
        run_trainer(toy.tagger(corpus), corpus, {"base_path": str(tmp_path / str(buckets)), "max_epochs": 1,
                                                 "mini_batch_size": 8, "length_buckets": buckets}, plugins=[seen])
        assert sum(map(len, seen.batches)) == len(corpus.train)
        spreads[buckets] = sum(max(b) - min(b) for b in seen.batches) / len(seen.batches)
    # toy sentences are 2..16 tokens long: shuffled batches span most of that, sorted ones a token or two
    assert spreads[True] < 0.3 * spreads[False]
