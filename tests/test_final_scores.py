"""experiments.final_scores: the test scores of the weights a run ended with, beside the best dev epoch's; and the
library's default, which keeps and tests the last weights."""
import pytest
import torch
from flair.trainers.plugins import TrainerPlugin

from experiments.final_scores import FinalModelScores
from skd_flair.models import DistillableTagger
from skd_flair.training.pipeline import run_trainer
from tests import toy


class SpoilAfterFirstEpoch(TrainerPlugin):
    """Scrambles the weights after every epoch but the first, before dev is scored: the first epoch stays best."""

    @TrainerPlugin.hook
    def after_training_epoch(self, epoch, **kw):
        if epoch > 1:
            with torch.no_grad():
                for p in self.model.parameters():
                    p.add_(torch.randn_like(p) * 5)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values() if p.is_floating_point()])


def _run(tmp_path, corpus, extra):
    torch.manual_seed(0)
    final = FinalModelScores(lambda model: {"weights": _weights(model), "training": model.training})
    model = toy.tagger(corpus)
    spec = {"base_path": str(tmp_path), "max_epochs": 3, "mini_batch_size": 8, "save_final_model": True, **extra}
    out = run_trainer(model, corpus, {k: v for k, v in spec.items() if v is not None},  # None: left unset
                      plugins=[SpoilAfterFirstEpoch(), final])
    return model, final, out


def test_scores_the_last_weights_not_the_best_epoch_that_flair_tests(tmp_path):
    corpus = toy.corpus(n_train=48)
    model, final, out = _run(tmp_path, corpus, {"use_final_model_for_eval": False})  # as experiments.run
    assert out["best_dev_epoch"] == 1 and out["epochs"] == 3
    last = _weights(DistillableTagger.load(str(tmp_path / "final-model.pt")))
    best = _weights(DistillableTagger.load(str(tmp_path / "best-model.pt")))
    assert torch.equal(final.scores["weights"], last) and not torch.equal(last, best)
    assert final.scores["training"] is False  # scored without dropout
    assert torch.equal(_weights(model), best)  # Flair put the best epoch back afterwards, as before


def test_a_run_that_annealing_ends_is_scored_too(tmp_path):
    """Flair's annealing stops a run by interrupting it once the learning rate falls below its minimum."""
    corpus = toy.corpus(n_train=48)
    _, final, out = _run(tmp_path, corpus, {"learning_rate": 0.1, "min_learning_rate": 0.09, "patience": 0,
                                            "anneal_factor": 0.5, "max_epochs": 10, "use_final_model_for_eval": False})
    assert out["epochs"] == 2  # epoch 2 is worse, the rate halves below the minimum, the run ends
    last = _weights(DistillableTagger.load(str(tmp_path / "final-model.pt")))
    assert torch.equal(final.scores["weights"], last)


def test_by_default_a_run_keeps_and_tests_its_last_weights_not_the_best_dev_epoch(tmp_path):
    corpus = toy.corpus(n_train=48)
    model, final, out = _run(tmp_path, corpus, {"save_final_model": None})  # unset: one model a run
    assert out["best_dev_epoch"] == 1 and out["epochs"] == 3  # dev still says epoch 1 was best
    assert not (tmp_path / "best-model.pt").exists() and out["model"].endswith("final-model.pt")
    assert out["weights"] == "last epoch"
    last = _weights(DistillableTagger.load(str(tmp_path / "final-model.pt")))
    assert torch.equal(_weights(model), last) and torch.equal(final.scores["weights"], last)
    scored = DistillableTagger.load(str(tmp_path / "final-model.pt")).evaluate(corpus.test, gold_label_type="ner")
    assert out["test_score"] == pytest.approx(scored.main_score)
