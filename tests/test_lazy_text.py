"""Unlabelled text read from disk per access (``text`` corpus, ``in_memory: false``): the same sentences as the
in-memory reader, sampling on top of it, and KD training over it through Flair's ModelTrainer."""
import pytest
from flair.trainers import ModelTrainer

from skd_flair.models.kd_student import is_unlabelled
from skd_flair.registry import ConfigError
from skd_flair.training.annotate import annotate
from skd_flair.training.corpora import load_corpus
from skd_flair.training.lazy_text import LazyTextDataset
from skd_flair.training.pipeline import training_corpus
from tests import toy

TEXT = ("\ufeffAnna went to Berlin\n# a comment line\n\n-DOCSTART-\nen:Bob saw   en:Rome .\n  \n"
        "the Acme Inc visited Paris\n")


@pytest.fixture
def files(tmp_path):
    (tmp_path / "a.txt").write_text(TEXT, encoding="utf-8")
    (tmp_path / "b.txt").write_text("Carla and Bob\nGlobex saw the a\n", encoding="utf-8")
    return tmp_path


def tokens(dataset):
    return [[t.text for t in s] for s in dataset]


@pytest.mark.parametrize("extra", [{}, {"skip_train": 1, "sample_train": 3}])
def test_lazy_reading_gives_the_in_memory_sentences(files, extra):
    spec = {"type": "text", "train_file": str(files / "*.txt"), "comment_symbol": "#", "strip_prefix": "en:", **extra}
    memory = load_corpus(spec)
    lazy = load_corpus({**spec, "in_memory": False})
    assert tokens(lazy.train) == tokens(memory.train)
    assert len(tokens(memory.train)) == (3 if extra else 5)
    assert all(is_unlabelled(s) for s in lazy.train)
    inner = lazy.train.dataset if hasattr(lazy.train, "dataset") else lazy.train
    while not isinstance(inner, LazyTextDataset):
        inner = inner.dataset
    assert len(inner.offsets) == 5  # an index entry per sentence, no Sentence kept


def test_lazy_reading_is_for_plain_text_only(files):
    with pytest.raises(ConfigError, match="in_memory: false applies to format: plain"):
        load_corpus({"type": "text", "format": "column", "train_file": str(files / "a.txt"), "in_memory": False})


@pytest.mark.slow
def test_kd_over_lazily_read_text_through_the_trainer(files, tmp_path):
    corpus = toy.corpus(n_train=16)
    unlabelled = load_corpus({"type": "text", "train_file": str(files / "*.txt"), "comment_symbol": "#",
                              "strip_prefix": "en:", "in_memory": False})
    teacher, student = toy.tagger(corpus, seed=1), toy.tagger(corpus, seed=2)
    train = training_corpus(corpus, unlabelled)
    targets = annotate(teacher, train.train, student, "structural", progress=False)  # read by index, not held
    from skd_flair.training.plugin import DistillationPlugin

    plugin = DistillationPlugin(targets)
    ModelTrainer(student, train).train(tmp_path / "run", max_epochs=1, mini_batch_size=8, plugins=[plugin])
    # every unlabelled sentence, read afresh from disk in its batch, found its targets by its text
    assert plugin.history[0]["KD_LOSS"] > 0
    assert len(targets) == len({tuple(t.text for t in s) for s in train.train})
