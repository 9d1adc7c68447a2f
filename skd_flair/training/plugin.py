"""The Flair TrainerPlugin that drives knowledge distillation inside `ModelTrainer.train` / `fine_tune`."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch
from flair.trainers.plugins import TrainerPlugin
from flair.trainers.plugins.metric_records import MetricRecord

from ..distill import DEFAULT_MIX, MIX_SCHEDULES
from ..distill.factorisations import factorisation
from ..distill.labels import LabelMismatchError
from ..models.kd_student import KD_TARGETS, is_unlabelled
from .annotate import TeacherTargets
from .distributed import is_main_process

log = logging.getLogger("flair")

__all__ = ["DistillationPlugin"]

_COLUMNS = ["EPOCH", "LAMBDA", "GOLD_LOSS", "KD_LOSS", "KL_PER_TOKEN", "TEACHER_ENTROPY", "ARGMAX_AGREEMENT"]
_PROBE_COLUMNS = ["GRAD_NORM_KD", "GRAD_NORM_GOLD"]  # with probe_gradients: the two terms' gradient norms


class DistillationPlugin(TrainerPlugin):
    """Feeds each training batch its cached teacher targets and sets the KD/gold mixing weight.

    Args:
        targets: the teacher's targets for the training sentences (`annotate`).
        mix: a schedule (``ConstantMix``, ``AnnealedMix``) or its config; lambda weights the KD loss. None is
            the default recipe's constant 0.5 (``DEFAULT_MIX``).
        log_file: name of the per-epoch KD log written next to Flair's loss.tsv.
        probe_gradients: also log, per epoch, the gradient norms of the KD term and of the gold term alone on
            one fixed batch (``kd.probe_gradients``): whether one term drowns the other.

    Per epoch it logs the gold and KD losses (per token) separately, the mean per-token KL from the
    teacher's token marginals to the student's, the teacher's mean token entropy and how often the two
    agree on a token's best label: to Flair's log, to ``kd_loss.tsv``, to ``history``, and as Flair metric
    records named ``kd/<column>`` (``kd/lambda``, ``kd/gold_loss``, ...), which Flair's logger plugins receive.
    """

    def __init__(self, targets: TeacherTargets, mix: Union[dict, str, object, None] = None,
                 log_file: Optional[str] = "kd_loss.tsv", probe_gradients: bool = False):
        super().__init__()
        self.probe_gradients = probe_gradients
        self.probe: List = []
        self.targets = targets
        if mix is None:
            mix = DEFAULT_MIX
        if isinstance(mix, (dict, str)):
            mix = MIX_SCHEDULES.build(mix, where="mix")
        self.mix = mix
        self.log_file = log_file
        self.base_path: Optional[Path] = None
        self.history = []
        self._reset()

    def _reset(self):
        self.sums = {"kd_loss": 0.0, "gold_loss": 0.0, "kl_sum": 0.0, "teacher_entropy_sum": 0.0, "agree": 0,
                     "tokens": 0, "labelled_tokens": 0}
        self.weight = None

    @TrainerPlugin.hook
    def after_setup(self, base_path=None, **kw):
        model = self.model
        if not hasattr(model, "kd_factorisation"):
            raise TypeError(f"{type(model).__name__} cannot learn from a teacher; use a skd_flair model")
        if model.kd_factorisation != self.targets.student:
            made_for, this = (factorisation(name).description for name in (self.targets.student, model.kd_factorisation))
            raise LabelMismatchError(f"the teacher targets were made for a {made_for} student, not a {this} one")
        labels = list(getattr(model, "label_names", model.label_dictionary.get_items()))
        if labels != self.targets.labels:
            raise LabelMismatchError(f"the teacher targets were made for labels {self.targets.labels}, but the "
                                     f"student has {labels}: annotate with this student")
        model.kd_objective = self.targets.build_objective()
        # Flair caches embeddings on tokens by name: a teacher's (kept on dev/test sentences by its own
        # training or annotation) must not be mistaken for the student's
        for sentence in self.trainer.corpus.get_all_sentences():
            sentence.clear_embeddings()
        self.base_path = Path(base_path) if base_path is not None else None
        log.info(f"KD: {model.kd_objective} on {len(self.targets)} sentences, mix {self.mix}")

    @TrainerPlugin.hook
    def before_training_epoch(self, epoch, **kw):
        self._reset()

    @TrainerPlugin.hook
    def before_training_batch(self, batch_no, batch, total_number_of_batches, epoch, **kw):
        if self.probe_gradients and epoch == 1 and batch_no == 0:
            self.probe = [s for s in batch if not is_unlabelled(s)]
        progress = (epoch - 1) + batch_no / max(total_number_of_batches, 1)
        self.weight = self.mix(progress)
        self.model.kd_weight = self.weight
        for sentence in batch:
            sentence.add_metadata(KD_TARGETS, self.targets.piece(sentence))

    @TrainerPlugin.hook
    def after_training_batch(self, batch, **kw):
        stats = getattr(self.model, "kd_stats", {}) or {}
        for key in ("kd_loss", "gold_loss", "kl_sum", "teacher_entropy_sum", "agree", "tokens"):
            self.sums[key] += stats.get(key, 0)
        self.sums["labelled_tokens"] += sum(len(s) for s in batch if not is_unlabelled(s))
        for sentence in batch:  # dense targets only live for their batch
            sentence._metadata.pop(KD_TARGETS, None)

    @TrainerPlugin.hook
    def after_training_epoch(self, epoch, **kw):
        s = self.sums
        tokens = max(s["tokens"], 1)
        row = {"EPOCH": epoch, "LAMBDA": self.weight if self.weight is not None else float("nan"),
               "GOLD_LOSS": s["gold_loss"] / max(s["labelled_tokens"], 1), "KD_LOSS": s["kd_loss"] / tokens,
               "KL_PER_TOKEN": s["kl_sum"] / tokens, "TEACHER_ENTROPY": s["teacher_entropy_sum"] / tokens,
               "ARGMAX_AGREEMENT": s["agree"] / tokens}
        if self.probe_gradients and self.probe:
            row.update(self._gradient_norms())
        self.history.append(row)
        self._publish(row, epoch)
        log.info("KD epoch {EPOCH}: lambda {LAMBDA:.4f} - gold loss {GOLD_LOSS:.4f} - KD loss {KD_LOSS:.4f} - "
                 "KL/token {KL_PER_TOKEN:.4f} - teacher entropy {TEACHER_ENTROPY:.4f} - argmax agreement "
                 "{ARGMAX_AGREEMENT:.4f}".format(**row))
        if self.base_path is not None and self.log_file and is_main_process():
            path = self.base_path / self.log_file
            new = not path.exists() or epoch == 1
            columns = [c for c in (*_COLUMNS, *_PROBE_COLUMNS) if c in row]
            with open(path, "w" if new else "a") as f:
                if new:
                    f.write("\t".join(columns) + "\n")
                f.write("\t".join(f"{row[c]:.6f}" if isinstance(row[c], float) else str(row[c]) for c in columns)
                        + "\n")

    def _publish(self, row: Dict[str, float], epoch: int):
        """Send the row through Flair's metric records (``kd/lambda``, ``kd/kd_loss``, ...; step = epoch), as the
        trainer sends its own losses and scores: Flair's logger plugins (TensorboardLogger, WandbLogger,
        ClearmlLogger) and any plugin with a ``metric_recorded`` hook receive them."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return
        for column, value in row.items():
            if column != "EPOCH":
                trainer.dispatch("metric_recorded", MetricRecord.scalar(("kd", column.lower()), float(value), epoch))

    def _gradient_norms(self) -> Dict[str, float]:
        """The gradient norm of the KD term alone and of the gold term alone on the first training batch's
        labelled sentences (always the same sentences), in eval mode so the probe draws no random numbers and
        leaves the training run unchanged; the gradients of the training step are put back afterwards."""
        model = self.model
        params = [p for p in model.parameters() if p.requires_grad]
        saved = [p.grad for p in params]
        was_training, weight = model.training, model.kd_weight
        model.eval()
        norms = {}
        try:
            for column, kd_weight in (("GRAD_NORM_KD", 1.0), ("GRAD_NORM_GOLD", 0.0)):
                for p in params:
                    p.grad = None
                model.kd_weight = kd_weight
                for sentence in self.probe:  # embeddings kept from training may hold a freed graph
                    sentence.clear_embeddings()
                    sentence.add_metadata(KD_TARGETS, self.targets.piece(sentence))
                loss, _ = model.forward_loss(self.probe)
                loss.backward()
                grads = [p.grad.detach().pow(2).sum() for p in params if p.grad is not None]
                norms[column] = float(torch.stack(grads).sum().sqrt()) if grads else 0.0
        finally:
            for sentence in self.probe:
                sentence._metadata.pop(KD_TARGETS, None)
                sentence.clear_embeddings()
            for p, g in zip(params, saved):
                p.grad = g
            model.train(was_training)
            model.kd_weight = weight
        return norms

    def get_state(self):
        return {**super().get_state(), "mix": repr(self.mix), "targets_key": self.targets.key}

