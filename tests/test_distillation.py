"""KD through Flair's own ModelTrainer: every case and baseline, the teacher cache, bad pairings."""
import logging

import pytest
import torch
from flair.data import Sentence
from flair.trainers import ModelTrainer

from skd_flair.distill import LabelMismatchError
from skd_flair.models import UNLABELLED, DistillableTagger
from skd_flair.training.annotate import annotate
from skd_flair.training.cache import compress, decompress
from skd_flair.training.plugin import DistillationPlugin
from tests import toy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus():
    return toy.corpus(n_train=40)


def train(model, corpus, path, epochs=1, plugins=(), fine_tune=False):
    trainer = ModelTrainer(model, corpus)
    kwargs = dict(max_epochs=epochs, mini_batch_size=8, plugins=list(plugins), save_final_model=True)
    if fine_tune:
        return trainer.fine_tune(path, learning_rate=1e-2, **kwargs)
    return trainer.train(path, learning_rate=0.1, **kwargs)


@pytest.fixture(scope="module")
def teachers(corpus, tmp_path_factory):
    out = {}
    for crf in (True, False):
        model = toy.tagger(corpus, use_crf=crf, hidden=16, dim=16, seed=3)
        train(model, corpus, tmp_path_factory.mktemp("teacher"), epochs=2)
        out[crf] = model
    return out


CASES = [  # teacher CRF?, student CRF?, objective
    (True, True, {"type": "structural", "temperature": 2.0}),  # 1a
    (True, False, {"type": "structural", "temperature": 2.0}),  # 2a
    (False, True, {"type": "structural"}),  # 3
    (True, True, {"type": "structural", "temperature": 2.0, "temperature_mode": "global"}),
    (True, True, {"type": "token", "temperature": 2.0}),
    (True, False, {"type": "token"}),
    (True, True, {"type": "posterior"}),
    (False, True, {"type": "posterior"}),
    (True, True, {"type": "topk", "k": 3}),
    (True, False, {"type": "topk", "k": 3, "weighted": True}),
]


@pytest.mark.parametrize("teacher_crf, student_crf, objective", CASES)
def test_every_case_and_baseline_trains_through_model_trainer(corpus, teachers, tmp_path, teacher_crf, student_crf,
                                                              objective):
    student = toy.tagger(corpus, use_crf=student_crf, seed=4)
    targets = annotate(teachers[teacher_crf], corpus.train, student, objective, progress=False)
    assert len(targets) == len({tuple(t.text for t in s) for s in corpus.train})
    plugin = DistillationPlugin(targets, mix={"type": "annealed", "factor": 10.0})
    result = train(student, corpus, tmp_path, epochs=2, plugins=[plugin])
    assert "test_score" in result
    rows = (tmp_path / "kd_loss.tsv").read_text().strip().splitlines()
    assert rows[0].split("\t")[:4] == ["EPOCH", "LAMBDA", "GOLD_LOSS", "KD_LOSS"] and len(rows) == 3
    values = [float(x) for x in rows[2].split("\t")]
    assert all(v == v for v in values)  # no NaN
    assert 0.0 < plugin.history[0]["LAMBDA"] < 1.0  # annealed within the first epoch
    # a cross-entropy to a distribution is >= 0; locally tempered pairwise marginals (a CRF student, T != 1,
    # local mode) are not the marginals of any distribution, so only there may the loss go below zero
    pseudo = student_crf and objective["type"] == "structural" and objective.get("temperature", 1.0) != 1.0 \
        and objective.get("temperature_mode", "local") == "local"
    if not pseudo:
        assert plugin.history[1]["KD_LOSS"] > -1e-6
    loaded = DistillableTagger.load(tmp_path / "final-model.pt")
    assert loaded.kd_objective.config()["type"] == objective["type"]


def test_fine_tune_path_with_kd(corpus, teachers, tmp_path):
    student = toy.tagger(corpus, use_crf=True, seed=5)
    targets = annotate(teachers[True], corpus.train, student, "structural", progress=False)
    train(student, corpus, tmp_path, epochs=1, plugins=[DistillationPlugin(targets, mix={"type": "constant",
                                                                                           "weight": 0.5})],
          fine_tune=True)
    rows = [line.split("\t") for line in (tmp_path / "kd_loss.tsv").read_text().strip().splitlines()]
    header, values = rows[0], dict(zip(rows[0], rows[1]))
    assert header[:4] == ["EPOCH", "LAMBDA", "GOLD_LOSS", "KD_LOSS"] and len(rows) == 2
    assert float(values["LAMBDA"]) == 0.5 and float(values["KD_LOSS"]) > 0 and float(values["GOLD_LOSS"]) > 0


def test_unlabelled_sentences_learn_from_the_teacher_alone(teachers, tmp_path):
    corpus = toy.corpus(n_train=30, seed=11)
    for s in corpus.train:
        s.add_metadata(UNLABELLED, True)
        for label in list(s.get_labels("ner")):
            s.remove_labels("ner")
    student = toy.tagger(toy.corpus(n_train=40), use_crf=True, seed=6)  # same tags as the teacher
    targets = annotate(teachers[True], corpus.train, student, "structural", progress=False)
    plugin = DistillationPlugin(targets)
    train(student, corpus, tmp_path, epochs=2, plugins=[plugin])
    assert plugin.history[-1]["GOLD_LOSS"] == 0.0 and plugin.history[-1]["KD_LOSS"] > 0


@pytest.mark.parametrize("lazy", [False, True], ids=["in_memory", "lazy"])
def test_cache_hit_miss_and_damage(corpus, teachers, tmp_path, caplog, monkeypatch, lazy):
    from skd_flair.training import cache as cache_module

    monkeypatch.setattr(cache_module, "LAZY_BYTES", 0 if lazy else 1 << 40)  # every file read lazily, or none
    teacher = teachers[True]
    student = toy.tagger(corpus, use_crf=True, seed=7)
    first = annotate(teacher, corpus.train, student, "structural", cache_dir=tmp_path, progress=False)
    assert list(tmp_path.glob("*/*.safetensors")) == [first.path]
    # read now: a lazy reader reads the file it was opened on, which this test damages in place below
    first_pairwise = [first.piece(s)["pairwise"] for s in corpus.train]

    calls = []
    original = type(teacher).teacher_scores

    def counting(self, sentences):
        calls.append(len(sentences))
        return original(self, sentences)

    type(teacher).teacher_scores = counting
    try:
        again = annotate(teacher, list(corpus.train)[::-1], student, "structural", cache_dir=tmp_path, progress=False)
        assert calls == [] and again.key == first.key  # order does not matter: a hit
        # another temperature or another teacher: a new target space, every sentence annotated
        annotate(teacher, corpus.train, student, {"type": "structural", "temperature": 2.0}, cache_dir=tmp_path,
                 progress=False)
        assert sum(calls) == 40
        with torch.no_grad():
            teacher.linear.bias[0] += 0.01
        changed = annotate(teacher, corpus.train, student, "structural", cache_dir=tmp_path, progress=False)
        assert changed.key != first.key and changed.path.parent != first.path.parent and sum(calls) == 80
        with torch.no_grad():
            teacher.linear.bias[0] -= 0.01
        # a truncated file and a corrupted file are detected and recomputed
        path = first.path
        path.write_bytes(path.read_bytes()[:200])
        with caplog.at_level(logging.WARNING, logger="skd_flair"):
            redone = annotate(teacher, corpus.train, student, "structural", cache_dir=tmp_path, progress=False)
        assert "unreadable" in caplog.text and sum(calls) == 120
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        redone = annotate(teacher, corpus.train, student, "structural", cache_dir=tmp_path, progress=False)
        assert sum(calls) == 160
    finally:
        type(teacher).teacher_scores = original
    for a, s in zip(first_pairwise, corpus.train):
        assert torch.allclose(a, redone.piece(s)["pairwise"], atol=1e-6)


def test_a_changed_corpus_annotates_only_its_new_sentences(corpus, teachers, tmp_path, caplog):
    teacher = teachers[True]
    student = toy.tagger(corpus, use_crf=True, seed=7)
    first = annotate(teacher, corpus.train, student, "structural", cache_dir=tmp_path, progress=False)
    calls = []
    original = type(teacher).teacher_scores
    type(teacher).teacher_scores = lambda self, s: (calls.append([x.to_tokenized_string() for x in s]),
                                                    original(self, s))[1]
    try:
        fewer = annotate(teacher, list(corpus.train)[:20], student, "structural", cache_dir=tmp_path, progress=False)
        assert calls == [] and fewer.key != first.key and fewer.stats["reused"] == 20 and len(fewer) == 20
        edited = [Sentence([t.text for t in s]) for s in corpus.train]
        edited[3] = Sentence([t.text for t in edited[3]] + ["Zanzibar"])  # one token added to one sentence
        extra = toy.sentences(5, seed=99)
        with caplog.at_level(logging.INFO, logger="skd_flair"):
            mixed = annotate(teacher, edited + extra, student, "structural", cache_dir=tmp_path, progress=False)
        new = {edited[3].to_tokenized_string()} | {s.to_tokenized_string() for s in extra}
        assert sorted(x for batch in calls for x in batch) == sorted(new)
        assert mixed.stats["reused"] == 39 and mixed.stats["sentences"] == len(new)
        assert "39 of 45 sentences reused" in caplog.text
    finally:
        type(teacher).teacher_scores = original
    for a, b in zip(corpus.train, edited):  # a reused piece is the piece annotated before
        if a.to_tokenized_string() == b.to_tokenized_string():
            assert torch.equal(first.piece(a)["pairwise"], mixed.piece(b)["pairwise"])
    # the reused entries were copied into the new corpus' own file: it stands alone
    first.path.unlink()
    fewer.path.unlink()
    calls.clear()
    type(teacher).teacher_scores = lambda self, s: (calls.append(len(s)), original(self, s))[1]
    try:
        annotate(teacher, edited + extra, student, "structural", cache_dir=tmp_path, progress=False)
    finally:
        type(teacher).teacher_scores = original
    assert calls == []


def test_interrupted_annotation_resumes_from_its_shards(corpus, teachers, tmp_path):
    teacher = teachers[True]
    student = toy.tagger(corpus, use_crf=True, seed=8)
    original = type(teacher).teacher_scores
    seen = []

    def failing(self, sentences):
        if len(seen) >= 2:
            raise KeyboardInterrupt
        seen.append(len(sentences))
        return original(self, sentences)

    type(teacher).teacher_scores = failing
    try:
        with pytest.raises(KeyboardInterrupt):
            annotate(teacher, corpus.train, student, "structural", cache_dir=tmp_path, batch_size=8, shard_every=8,
                     progress=False)
    finally:
        type(teacher).teacher_scores = original
    assert len(list(tmp_path.glob("*/*.partial/shard-*.safetensors"))) == 2
    done = []
    type(teacher).teacher_scores = lambda self, s: (done.append(len(s)), original(self, s))[1]
    try:
        targets = annotate(teacher, corpus.train, student, "structural", cache_dir=tmp_path, batch_size=8,
                           progress=False)
    finally:
        type(teacher).teacher_scores = original
    assert sum(done) == len(targets) - 16 and not list(tmp_path.glob("*/*.partial"))


def test_compressed_targets_are_exact_to_the_threshold():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(7, 5, 5, generator=g, dtype=torch.float64) * 6, dim=-1)
    piece = {"kind": "chain", "unary": p[:, 0], "pairwise": p[:6]}
    back = decompress(compress(piece, threshold=1e-7))
    assert (back["pairwise"].double() - p[:6]).abs().max() <= 1e-7
    exact = decompress(compress(piece, threshold=0.0))
    assert (exact["pairwise"].double() - p[:6]).abs().max() < 1e-7  # float32 rounding only


def test_tag_dictionary_mismatch_is_a_clear_error(corpus, teachers, tmp_path, caplog):
    other = toy.corpus(types={"Anna": "PER", "Berlin": "GPE", "Bob": "PER"})
    student = toy.tagger(other, use_crf=True)
    with pytest.raises(LabelMismatchError, match="GPE|LOC"):
        annotate(teachers[True], corpus.train, student, "structural", progress=False)
    # a student type the teacher lacks: refused, or, said out loud, logged with the gold tokens concerned
    extra = toy.corpus(types={**toy.NAMES, "Oslo": "GPE"})
    wider = toy.tagger(extra, use_crf=True)
    with pytest.raises(LabelMismatchError, match=r"never predicts: \[.*GPE.*\].*\(\d+ gold training tokens"):
        annotate(teachers[True], extra.train, wider, "structural", progress=False)
    with caplog.at_level(logging.WARNING, logger="skd_flair"):
        annotate(teachers[True], extra.train, wider, "structural", progress=False, allow_missing_labels=True)
    gpe = sum(len(span) for s in extra.train for span in s.get_spans("ner") if span.tag == "GPE")
    assert gpe > 0 and f"({gpe} gold training tokens carry them)" in caplog.text
    right = toy.tagger(corpus, use_crf=True)
    targets = annotate(teachers[True], corpus.train, right, "structural", progress=False)
    with pytest.raises(LabelMismatchError, match="MaxEnt|CRF"):
        train(toy.tagger(corpus, use_crf=False), corpus, tmp_path, plugins=[DistillationPlugin(targets)])


def test_teacher_and_student_embeddings_never_leak(corpus, teachers, tmp_path):
    # teacher and student embeddings share Flair's name "one-hot-text" but differ in size
    student = toy.tagger(corpus, use_crf=True, dim=5, seed=9)
    assert student.embeddings.name == teachers[True].embeddings.name
    targets = annotate(teachers[True], corpus.train, student, "structural", progress=False)
    train(student, corpus, tmp_path, epochs=1, plugins=[DistillationPlugin(targets)])


def _annotate_in_rank(rank, world, init_file, cache_dir, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        corpus = toy.corpus(n_train=12)
        teacher = toy.tagger(corpus, seed=3)
        student = toy.tagger(corpus, seed=4)
        calls = []
        original = type(teacher).teacher_scores
        type(teacher).teacher_scores = lambda self, s: (calls.append(len(s)), original(self, s))[1]
        targets = annotate(teacher, corpus.train, student, "structural", cache_dir=cache_dir, progress=False)
        (out_dir / f"rank{rank}.txt").write_text(f"{sum(calls)} {len(targets)} {targets.key}")
    finally:
        dist.destroy_process_group()


def test_distributed_processes_share_one_annotation(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_annotate_in_rank, args=(2, tmp_path / "init", tmp_path / "cache", tmp_path), nprocs=2)
    rank0 = (tmp_path / "rank0.txt").read_text().split()
    rank1 = (tmp_path / "rank1.txt").read_text().split()
    # each rank ran the teacher on its own share (by sentence hash); together once over every distinct sentence
    assert int(rank0[0]) > 0 and int(rank1[0]) > 0 and int(rank0[0]) + int(rank1[0]) == int(rank0[1])
    assert rank0[1:] == rank1[1:]


def _train_in_rank(rank, world, tmp):
    import flair
    import flair.trainers.trainer as trainer_module
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        # Flair's multi-GPU path hands DDP a CUDA device index; on CPU (gloo) DDP takes none
        trainer_module.DistributedDataParallel = lambda model, device_ids=None, **kw: DistributedDataParallel(model,
                                                                                                              **kw)
        flair.set_seed(1)  # Flair checks that every process holds the same corpus, by a seeded sample
        corpus = toy.corpus(n_train=24)
        teacher, student = toy.tagger(corpus, seed=3), toy.tagger(corpus, seed=4)
        targets = annotate(teacher, corpus.train, student, "structural", cache_dir=tmp / "cache", progress=False)
        plugin = DistillationPlugin(targets)
        ModelTrainer(student, corpus).train(tmp / "out", max_epochs=2, mini_batch_size=4, multi_gpu=True,
                                            plugins=[plugin])
        total = sum(float(p.detach().double().sum()) for p in student.parameters())
        (tmp / f"rank{rank}.txt").write_text(f"{total!r} {len(plugin.history)}")
    finally:
        dist.destroy_process_group()


def test_flairs_multi_gpu_path_trains_with_kd(tmp_path):
    """Flair's launch_distributed / multi_gpu=True path (DistributedDataParallel), run on CPU with gloo."""
    import torch.multiprocessing as mp

    mp.spawn(_train_in_rank, args=(2, tmp_path), nprocs=2)
    rank0, rank1 = ((tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1))
    assert rank0 == rank1 and rank0[1] == "2"  # the same weights on both processes after training, 2 epochs of KD


class _Evil:
    def __reduce__(self):
        return (open, (str(_EVIDENCE), "w"))


_EVIDENCE = None


@pytest.mark.parametrize("objective,crf", [("structural", True), ("structural", False), ("token", False),
                                           ({"type": "topk", "k": 3}, True)])
def test_lazy_reading_gives_every_stored_piece(corpus, teachers, tmp_path, objective, crf):
    from skd_flair.training.cache import SUFFIX, TargetCache
    from skd_flair.training.lazy_targets import FileTensors

    student = toy.tagger(corpus, use_crf=crf, seed=7)
    targets = annotate(teachers[True], corpus.train, student, objective, cache_dir=tmp_path, progress=False)
    cache = TargetCache(targets.path.parent, targets.path.name[:-len(SUFFIX)])
    eager, lazy = cache.load(lazy=False)["entries"], cache.load(lazy=True)["entries"]
    assert isinstance(lazy.tensors, FileTensors) and set(lazy) == set(eager) and len(lazy) == len(eager) > 0
    for key in eager:
        a, b = eager[key], lazy[key]
        assert a.keys() == b.keys() and a["kind"] == b["kind"]
        for field in a:
            if isinstance(a[field], dict):
                assert a[field]["shape"] == b[field]["shape"]
                assert torch.equal(a[field]["index"], b[field]["index"])
                assert torch.equal(a[field]["value"], b[field]["value"])
            elif field != "kind":
                assert a[field].dtype == b[field].dtype and torch.equal(a[field], b[field])


def test_cache_files_run_no_code_and_belong_to_their_key(corpus, teachers, tmp_path, caplog):
    global _EVIDENCE
    teacher = teachers[True]
    student = toy.tagger(corpus, use_crf=True, seed=7)
    first = annotate(teacher, corpus.train, student, "structural", cache_dir=tmp_path, progress=False)
    other = annotate(teacher, list(corpus.train)[:10], student, "structural", cache_dir=tmp_path, progress=False)
    path, wrong = first.path, other.path
    path.write_bytes(wrong.read_bytes())  # a valid file, made for another key
    with caplog.at_level(logging.WARNING, logger="skd_flair"):
        again = annotate(teacher, corpus.train, student, "structural", cache_dir=tmp_path, progress=False)
    assert "made for another cache key" in caplog.text and len(again) == len(first)
    _EVIDENCE = tmp_path / "code-ran"
    torch.save({"format": 2, "payload": _Evil()}, path)  # a pickle where the cache expects its own file
    redone = annotate(teacher, corpus.train, student, "structural", cache_dir=tmp_path, progress=False)
    assert not _EVIDENCE.exists() and len(redone) == len(first)
    for s in corpus.train:  # partly reused, partly annotated in other batches: equal to float32 rounding
        assert torch.allclose(first.piece(s)["pairwise"], redone.piece(s)["pairwise"], atol=1e-6)


def test_targets_depend_on_the_batch_size_only_through_rounding(corpus, teachers):
    teacher = teachers[True]
    student = toy.tagger(corpus, use_crf=True, seed=7)
    small = annotate(teacher, corpus.train, student, "structural", cache_dir=False, batch_size=3, progress=False)
    large = annotate(teacher, corpus.train, student, "structural", cache_dir=False, batch_size=32, progress=False)
    worst = max((small.piece(s)[f] - large.piece(s)[f]).abs().max().item()
                for s in corpus.train for f in ("unary", "pairwise"))
    assert worst < 1e-5  # the bound annotate's docstring states
