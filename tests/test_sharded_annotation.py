"""Annotation sharded over torch.distributed processes (gloo on CPU): each rank annotates its share of the
sentences, rank 0 merges the shards, and every rank reads the same targets as one process would have made
(``pytest -k sharded``)."""
import pytest
import torch
import torch.multiprocessing as mp

from skd_flair.training.annotate import annotate
from tests import toy


def _setup(seed_offset=0):
    corpus = toy.corpus(n_train=40, seed=7)
    teacher = toy.tagger(corpus, use_crf=True, seed=3 + seed_offset).eval()
    student = toy.tagger(corpus, use_crf=True, seed=4)
    return corpus, teacher, student


def _worker(rank, world, init_file, cache_dir, out_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        corpus, teacher, student = _setup()
        seen = []
        original = type(teacher).teacher_scores
        type(teacher).teacher_scores = lambda self, s: (seen.extend(x.to_tokenized_string() for x in s),
                                                        original(self, s))[1]
        targets = annotate(teacher, corpus.train, student, "structural", cache_dir=cache_dir, progress=False,
                           batch_size=4, shard_every=4)
        type(teacher).teacher_scores = original
        pieces = {s.to_tokenized_string(): targets.piece(s)["pairwise"] for s in corpus.train}
        torch.save({"seen": seen, "pieces": pieces, "stats": targets.stats, "path": str(targets.path)},
                   f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two fresh processes import Flair
def test_sharded_annotation_equals_one_process(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "cache"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    corpus, teacher, student = _setup()
    single = annotate(teacher, corpus.train, student, "structural", cache_dir=tmp_path / "single", progress=False)
    distinct = {s.to_tokenized_string() for s in corpus.train}
    # the ranks split the work: disjoint shares that cover every distinct sentence once
    assert all(r["seen"] for r in ranks) and not set(ranks[0]["seen"]) & set(ranks[1]["seen"])
    assert sorted(ranks[0]["seen"] + ranks[1]["seen"]) == sorted(distinct)
    assert ranks[0]["path"] == ranks[1]["path"] and ranks[0]["stats"]["sentences"] == len(distinct)
    assert ranks[0]["stats"]["processes"] == 2
    for s in corpus.train:  # the same targets as one process, to float32 rounding of other batch compositions
        text = s.to_tokenized_string()
        assert torch.equal(ranks[0]["pieces"][text], ranks[1]["pieces"][text])
        torch.testing.assert_close(ranks[0]["pieces"][text], single.piece(s)["pairwise"], atol=1e-6, rtol=0)
    assert not list((tmp_path / "cache").glob("*/*.partial"))  # the shards were merged and removed
    # a second sharded run finds the merged file: nobody annotates
    mp.spawn(_worker, args=(2, str(tmp_path / "init2"), str(tmp_path / "cache"), str(tmp_path)), nprocs=2, join=True)
    again = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert again[0]["seen"] == again[1]["seen"] == [] and again[0]["stats"].get("cache_hit")
