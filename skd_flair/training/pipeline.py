"""Whole jobs from one configuration: train a model, distil a student, evaluate, predict, time.

A configuration (YAML or dict) has these sections::

    seed: 1
    corpus: {type: column, data_folder: ..., column_format: {0: text, 1: ner}}
    unlabelled: {type: text, train_file: ...}       # optional: more training text, teacher targets only
    teacher: {path: out/teacher}                    # distil only: run folder, model file or hub id (+ type)
    model: {type: tagger, tag_type: ner, use_crf: true, embeddings: [{type: glove}, {type: char}]}
    kd: {objective: {type: structural, temperature: 1}, mix: {type: constant, weight: 0.5}}   # the defaults
    trainer: {base_path: out/student, method: train, max_epochs: 20, learning_rate: 0.1}

Every job writes ``results.json`` into ``trainer.base_path``.
"""
from __future__ import annotations

import copy
import inspect
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, List, Literal, Mapping, Optional, Sequence, Set, Tuple, Union

import flair
import torch
import yaml
from flair.data import Corpus, Sentence
from flair.trainers import ModelTrainer
from flair.trainers.plugins import MetricHistoryPlugin
from torch.utils.data import ConcatDataset

from ..models.eval_loop import eval_mode
from ..registry import ConfigError, check_value, check_values
from ..types import Count, NonNegative, Positive, Probability
from .annotate import annotate
from .budget import TIME_BUDGET, TimeBudgetPlugin
from .cache import sentence_key
from .corpora import load_corpus, part_of
from .distributed import is_distributed, is_main_process, launch, processes
from .embeddings import check_embedding_packages
from .fresh_embeddings import FreshEvaluationEmbeddingsPlugin
from .length_buckets import LengthBucketSampler
from .models import build_model, load_model
from .plugin import DistillationPlugin
from .provenance import ProvenancePlugin, check_unlabelled, cross_fit_shares, teacher_training_keys
from .resume import ResumePlugin, config_hash, finish_run, prepare_run

log = logging.getLogger("skd_flair")

__all__ = ["load_config", "check_config", "train_model", "distill", "annotate_only", "evaluate_model", "predict_file", "measure_speed",
           "SECTIONS"]

SECTIONS = ("seed", "corpus", "unlabelled", "teacher", "model", "kd", "trainer", "name")


def kd_section(objective: Union[str, Mapping[str, Any]] = "structural",
               mix: Union[str, Mapping[str, Any], None] = None,
               cache_dir: Union[str, Path, None] = None,
               batch_size: Count = 32,
               threshold: Probability = 1e-7,
               shard_every: Count = 2000,
               allow_label_leak: bool = False,
               cross_fit: bool = False,
               allow_missing_labels: bool = False,
               probe_gradients: bool = False) -> Dict[str, Any]:
    """The ``kd`` section with its defaults filled in: this signature is the section's schema (its keys, value
    types and defaults; ``check`` validates against it, the configuration reference is generated from it).
    ``mix: null`` is the default recipe's ``{type: constant, weight: 0.5}`` (``distill.DEFAULT_MIX``); the
    reference's annealing is ``{type: annealed, factor: 1}``."""
    return dict(locals())


KD_KEYS = tuple(inspect.signature(kd_section).parameters)
OPTIMIZERS = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}


def keeps_last_weights(trainer: Mapping[str, Any]) -> bool:
    """Whether a run keeps (and tests) the weights training ended with, ``final-model.pt``: the default, unless
    ``trainer.use_final_model_for_eval`` is false (Flair's own default for ``train``), which keeps the best dev
    epoch's, ``best-model.pt``. When the default was switched (2026-12-05) the last weights had scored higher on
    41 of 53 paired runs of the experiments, by +0.43 F1 on average, and on all 19 whose best dev epoch came early
    (experiments/RESULTS.md, "Best dev epoch or last weights", keeps the count): on a dev set where the epochs
    differ by noise, choosing one costs more than it buys."""
    return bool(trainer.get("use_final_model_for_eval", True))


def _parse_override(text: str):
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, value = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


def load_config(source: Union[str, Path, Mapping[str, Any]], overrides: Sequence[str] = ()) -> Dict[str, Any]:
    """Read a YAML file (or take a dict), apply ``a.b=value`` overrides and check the section names."""
    if isinstance(source, Mapping):
        config = copy.deepcopy(dict(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist")
        try:
            with open(path) as f:
                config = yaml.safe_load(f) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            at = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"{path}{at}: not valid YAML ({getattr(error, 'problem', None) or error})") from None
        if not isinstance(config, dict):
            raise ConfigError(f"{path}: a configuration must be a mapping of sections")
    for text in overrides:
        keys, value = _parse_override(text)
        node = config
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {key} is not a section")
        node[keys[-1]] = value
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown configuration section(s) {', '.join(unknown)}; allowed: {', '.join(SECTIONS)}")
    return config


def _check_kd(kd: Mapping[str, Any]) -> Dict[str, Any]:
    """The kd section's keys and values checked against :func:`kd_section`; returns it with defaults."""
    from ..registry import check_keys

    if not isinstance(kd, Mapping):
        raise ConfigError(f"kd: expected a mapping of {', '.join(KD_KEYS)}, got {kd!r}")
    check_keys(kd_section, kd, "kd")
    return kd_section(**kd)


def _check_component(registry, spec, where: str, extra=()):
    from ..registry import check_keys

    if isinstance(spec, str):
        spec = {"type": spec}
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ConfigError(f"{where}: expected a mapping with a 'type' key, got {spec!r}")
    check_keys(registry.get(spec["type"]), {k: v for k, v in spec.items() if k != "type"}, where, extra)


def check_config(config, files: bool = True) -> Dict[str, Any]:
    """Check every section's keys, value types and ranges against the registries without building anything
    (no data or model is loaded): a ready-made configuration with a typo fails here, not an hour into a run.
    With ``files``, also that the data folders and the teacher file exist and optional packages are installed
    (off for configurations shipped for other machines)."""
    from ..distill import MIX_SCHEDULES, OBJECTIVES
    from .corpora import CORPORA
    from .embeddings import EMBEDDINGS
    from .models import MODELS

    config = load_config(config)
    for section in ("corpus", "unlabelled"):
        if config.get(section):
            _check_component(CORPORA, config[section], section)
    if "model" in config:
        model = dict(config["model"])
        embeddings = model.get("embeddings", [])
        for i, spec in enumerate(embeddings if isinstance(embeddings, list) else [embeddings]):
            _check_component(EMBEDDINGS, spec, f"model.embeddings[{i}]", extra=("corpus",))
        _check_component(MODELS, model, "model", extra=("corpus", "teacher"))
    kd = config.get("kd") or {}
    _check_kd(kd)
    if kd.get("objective"):
        _check_component(OBJECTIVES, kd["objective"], "kd.objective")
    if kd.get("mix"):
        _check_component(MIX_SCHEDULES, kd["mix"], "kd.mix")
        mix = kd["mix"]
        if isinstance(mix, Mapping) and mix.get("type") == "constant" and mix.get("weight") == 0 \
                and "corpus" in config and not config.get("unlabelled"):
            raise ConfigError("kd.mix: weight 0 trains the gold sentences on their gold labels alone and there is "
                              "no unlabelled section, so the teacher would teach nothing (add unlabelled text, or "
                              "train without KD: skd-flair train)")
    if config.get("kd") is not None and not config.get("teacher"):
        raise ConfigError("kd: a distillation needs a teacher section (teacher: {path: ...})")
    if config.get("teacher") is not None:
        for where, teacher, _, _ in _teacher_specs(config["teacher"]):
            path = str(teacher.get("path", "") if isinstance(teacher, Mapping) else teacher)
            if files and (path.endswith(".pt") or path.startswith((".", "/", "~"))) and \
                    not Path(path).expanduser().exists():
                raise ConfigError(f"{where}: model file {path} does not exist")
    for section in ("corpus", "unlabelled") if files else ():
        folder = (config.get(section) or {}).get("data_folder") if isinstance(config.get(section), Mapping) else None
        if folder is not None and not Path(str(folder)).expanduser().is_dir():
            raise ConfigError(f"{section}: data_folder '{folder}' does not exist")
    if files and "model" in config:
        check_embedding_packages(config["model"].get("embeddings", []))
    if "trainer" in config:
        _check_trainer(config["trainer"])
        if files:
            check_plugin_packages(config["trainer"].get("plugins") or ())
    return config


def _tensorboard(base_path: Path):
    from flair.trainers.plugins import TensorboardLogger

    return TensorboardLogger(log_dir=str(base_path / "tensorboard"))


# trainer.plugins: name -> (the module it imports, the setup.cfg extra that installs it, factory of base_path)
TRAINER_PLUGINS = {"tensorboard": ("tensorboard", "tensorboard", _tensorboard)}
PluginName = Literal[tuple(TRAINER_PLUGINS)]


def check_plugin_packages(names: Sequence[str]) -> None:
    """ConfigError in one line naming the extra to install when a trainer plugin's package is missing."""
    import importlib.util

    for name in names:
        if name not in TRAINER_PLUGINS:
            raise ConfigError(f"trainer.plugins: unknown plugin {name!r}; known: {', '.join(TRAINER_PLUGINS)}")
        module, extra, _ = TRAINER_PLUGINS[name]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"trainer.plugins: {name} needs the '{module}' package: pip install "
                              f"'skd_flair[{extra}]' (or pip install {module})")


def trainer_plugins(names: Sequence[str], base_path: Path) -> List:
    """Flair logger plugins for ``trainer.plugins`` (``tensorboard``: Flair's TensorboardLogger writing to
    ``<base_path>/tensorboard``)."""
    check_plugin_packages(names)
    base_path.mkdir(parents=True, exist_ok=True)
    return [TRAINER_PLUGINS[name][2](base_path) for name in names]


def trainer_keys(base_path: Union[str, Path], method: Literal["train", "fine_tune"] = "train",
                 optimizer: Optional[Literal["SGD", "Adam", "AdamW"]] = None,
                 optimizer_kwargs: Optional[Mapping[str, Any]] = None,
                 max_minutes: Optional[Positive] = None,
                 plugins: Sequence[PluginName] = (),
                 length_buckets: bool = False) -> None:
    """The ``trainer`` keys that skd_flair reads itself, with their types and defaults (``check`` and the
    configuration reference read this signature); every other ``trainer`` key is an argument of Flair's
    ``ModelTrainer.train`` / ``fine_tune`` (``method``)."""


# ranges Flair's annotations do not say
_TRAINER_RANGES = {"learning_rate": Positive, "max_epochs": Count, "mini_batch_size": Count, "patience": NonNegative,
                   "anneal_factor": Positive, "min_learning_rate": Positive}


def _check_trainer(section: Mapping[str, Any]):
    trainer = dict(section)
    method = trainer.pop("method", "train")
    if method not in ("train", "fine_tune"):
        raise ConfigError(f"trainer.method must be 'train' or 'fine_tune', got {method!r}")
    own = set(inspect.signature(trainer_keys).parameters)
    unknown = sorted(set(trainer) - _trainer_arguments(method) - own)
    if unknown:
        raise ConfigError(f"trainer: unknown key(s) {', '.join(unknown)} for ModelTrainer.{method}")
    if "base_path" not in trainer:
        raise ConfigError("trainer: missing required key base_path (where the model and logs go)")
    if trainer.get("anneal_with_restarts") and keeps_last_weights(trainer):
        raise ConfigError("trainer.anneal_with_restarts reloads best-model.pt, which a run keeping its last weights "
                          "never writes: set trainer.use_final_model_for_eval: false as well")
    if trainer.get("save_final_model") is False and keeps_last_weights(trainer):
        raise ConfigError("trainer.save_final_model: false with the last weights kept (the default) leaves the run "
                          "no model: set trainer.use_final_model_for_eval: false to keep the best dev epoch's")
    optimizer = trainer.pop("optimizer", None)
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise ConfigError(f"trainer.optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    for key, value in trainer.items():
        if key in _TRAINER_RANGES:
            check_value(_TRAINER_RANGES[key], value, key, "trainer")
    check_values(trainer_keys, {k: v for k, v in trainer.items() if k in own}, "trainer")
    check_values(getattr(ModelTrainer, method), {k: v for k, v in trainer.items() if k not in _TRAINER_RANGES
                                                 and k not in own}, "trainer")


def _require(config: Mapping[str, Any], *sections: str):
    missing = [s for s in sections if s not in config]
    if missing:
        raise ConfigError(f"configuration lacks section(s) {', '.join(missing)}")


def _trainer_arguments(method: str) -> set:
    trainer = ModelTrainer.__dict__
    names = set(inspect.signature(trainer[method]).parameters) | set(inspect.signature(trainer["train_custom"])
                                                                    .parameters)
    return names - {"self", "kwargs", "plugins", "base_path"}


def run_trainer(model, corpus: Corpus, spec: Mapping[str, Any], plugins: List, run_hash: Optional[str] = None,
                overwrite: bool = False) -> Dict[str, Any]:
    """Train with Flair's ModelTrainer. With ``run_hash`` (the hash of the whole configuration), the run folder
    is checkpointed every epoch and an unfinished run of the same configuration resumes (see ``resume``)."""
    spec = dict(spec)
    if "base_path" not in spec:
        raise ConfigError("trainer: missing required key base_path")
    spec["use_final_model_for_eval"] = keeps_last_weights(spec)
    base_path = Path(spec.pop("base_path"))
    method = spec.pop("method", "train")
    if method not in ("train", "fine_tune"):
        raise ConfigError(f"trainer.method must be 'train' or 'fine_tune', got {method!r}")
    optimizer_kwargs = spec.pop("optimizer_kwargs", {}) or {}
    max_minutes = spec.pop("max_minutes", None)
    if is_distributed():  # one process of several (launch, torchrun): Flair's DistributedDataParallel path
        spec["multi_gpu"] = True
    elif spec.get("multi_gpu"):
        raise ConfigError("trainer.multi_gpu: true needs several processes: give --nproc N, or run under torchrun")
    if spec.pop("length_buckets", False):
        spec["sampler"] = LengthBucketSampler(int(spec.get("mini_batch_size", 32)))
    logger_names = list(spec.pop("plugins", None) or ())
    check_plugin_packages(logger_names)
    if isinstance(spec.get("optimizer"), str):
        if spec["optimizer"] not in OPTIMIZERS:
            raise ConfigError(f"trainer.optimizer must be one of {', '.join(OPTIMIZERS)}, got {spec['optimizer']!r}")
        spec["optimizer"] = OPTIMIZERS[spec["optimizer"]]
    if "main_evaluation_metric" in spec:
        spec["main_evaluation_metric"] = tuple(spec["main_evaluation_metric"])
    unknown = sorted(set(spec) - _trainer_arguments(method))
    if unknown:
        raise ConfigError(f"trainer: unknown key(s) {', '.join(unknown)} for ModelTrainer.{method} "
                          "(optimizer arguments go under trainer.optimizer_kwargs)")
    trainer = ModelTrainer(model, corpus)
    start = time.time()
    # the saved model lists its gold training sentences; the histories say how many epochs ran and which was best
    plugins = [*plugins, ProvenancePlugin(corpus.train), MetricHistoryPlugin(),
               FreshEvaluationEmbeddingsPlugin([corpus.train, corpus.dev, corpus.test])]
    budget = TimeBudgetPlugin(max_minutes) if max_minutes is not None else None
    if budget is not None:  # after the KD plugin, which tidies each batch up
        plugins.append(budget)
    resume = None
    if run_hash is not None:
        checkpoint = _prepare_run_once(base_path, run_hash, overwrite)
        resume = ResumePlugin(base_path, checkpoint)
        plugins = [resume, *plugins]
        if checkpoint is not None:
            spec["epoch"] = int(checkpoint["epoch"])
            if spec["use_final_model_for_eval"] and is_main_process():
                # left by a process that kept the best dev epoch (before the default moved): Flair would test it
                (base_path / "best-model.pt").unlink(missing_ok=True)
    plugins += trainer_plugins(logger_names, base_path)  # after prepare_run, which may refuse the folder
    with warnings.catch_warnings():  # raised inside Flair's trainer on every run; nothing a user can change
        warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.GradScaler", category=FutureWarning)
        result = getattr(trainer, method)(base_path, plugins=plugins, **spec, **optimizer_kwargs)
    if run_hash is not None and is_main_process():
        finish_run(base_path, run_hash)
    best, final = base_path / "best-model.pt", base_path / "final-model.pt"
    if "save_final_model" not in spec and best.exists() and is_main_process():
        final.unlink(missing_ok=True)  # one model per run: the best dev epoch's (set save_final_model to keep both)
    kept = final if spec["use_final_model_for_eval"] and final.exists() else best if best.exists() else final
    dev = result.get("dev_score_history") or []
    resumed = int(spec.get("epoch", 0))  # epochs finished before a resume
    # epochs the histories lack: none when the checkpoint restored them, all before the resume when it could not
    missing = 0 if resume is None or resume.histories_restored else resumed
    seconds = resume.train_seconds() if resume is not None else time.time() - start
    return {"test_score": result.get("test_score"), "train_seconds": seconds, "base_path": str(base_path),
            "model": str(kept), "weights": "last epoch" if kept == final else "best dev epoch",
            "epochs": missing + len(result.get("train_loss_history") or []), "dev_score_history": dev,
            "resumed_after_epoch": resumed,
            "processes": torch.distributed.get_world_size() if is_distributed() else 1,
            "stopped_early": TIME_BUDGET if budget is not None and budget.stopped else None,
            "best_dev_epoch": missing + 1 + max(range(len(dev)), key=dev.__getitem__) if dev else None}


def _prepare_run_once(base_path: Path, run_hash: str, overwrite: bool):
    """prepare_run in the first process, then in the others, which find the folder ready and the same checkpoint
    (no process clears what another has just written)."""
    if not is_distributed():
        return prepare_run(base_path, run_hash, overwrite=overwrite)
    checkpoint = prepare_run(base_path, run_hash, overwrite=overwrite) if is_main_process() else None
    torch.distributed.barrier()
    if not is_main_process():
        checkpoint = prepare_run(base_path, run_hash, overwrite=overwrite)
    torch.distributed.barrier()
    return checkpoint


def _set_seed(config):
    if config.get("seed") is not None:
        flair.set_seed(int(config["seed"]))


def _write_results(base_path: Union[str, Path], results: Dict[str, Any]):
    if not is_main_process():
        return
    path = Path(base_path) / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def _in_processes(fn, config, overwrite: bool, nproc: Optional[int]):
    """Run ``fn(config, overwrite)`` in `nproc` processes (``launch``) when the run asks for several."""
    n = processes(config.get("trainer") or {}, nproc)
    if n > 1 or is_distributed():
        _check_several_processes(config)
    if n == 1:
        return None
    trainer = {**config["trainer"], "multi_gpu": True}  # one configuration hash however the processes were asked
    return launch(fn, n, {**config, "trainer": trainer}, overwrite)


def _check_several_processes(config):
    if (config.get("trainer") or {}).get("length_buckets"):
        raise ConfigError("trainer.length_buckets: several processes draw their batches from Flair's "
                          "DistributedSampler, not from length buckets; drop one of the two")
    if (config.get("kd") or {}).get("probe_gradients"):
        raise ConfigError("kd.probe_gradients measures each term's gradient on one process's model; "
                          "it cannot run with several processes")


def train_model(config, overwrite: bool = False, nproc: Optional[int] = None) -> Dict[str, Any]:
    """Train a model (a teacher, or a student without KD) from a configuration; an interrupted run of the same
    configuration resumes, a folder holding another configuration's run is refused unless ``overwrite``. With
    ``nproc`` > 1 (or ``trainer.multi_gpu``) it trains data-parallel in that many processes."""
    config = check_config(load_config(config))
    _require(config, "corpus", "model", "trainer")
    launched = _in_processes(train_model, config, overwrite, nproc)
    if launched is not None:
        return launched
    _set_seed(config)
    corpus = load_corpus(config["corpus"])
    model = build_model(config["model"], corpus)
    results = run_trainer(model, corpus, config["trainer"], plugins=[], run_hash=config_hash(config),
                          overwrite=overwrite)
    results.update({"config": config, "kd": None})
    _write_results(results["base_path"], results)
    return results


def training_corpus(corpus: Corpus, unlabelled: Optional[Corpus]) -> Corpus:
    """The labelled training sentences followed by the unlabelled ones (zero-shot: the labelled corpus may have
    no training split at all, only dev and test)."""
    if unlabelled is None or unlabelled.train is None:
        return corpus
    parts = [d for d in (corpus.train, unlabelled.train) if d is not None]
    return Corpus(ConcatDataset(parts), corpus.dev, corpus.test, name=corpus.name, sample_missing_splits=False)


TEACHER_KEYS = ("path", "type", "weight", "corpus")  # weight and corpus: only in a list of teachers


def _teacher_specs(section) -> List[Tuple[str, Any, float, Optional[List[str]]]]:
    """(where, model spec, weight, corpus parts) of the teacher section: one teacher (a path or {path, type}),
    or a list of {path, type, weight, corpus} whose targets are mixed (``TeacherMixture``): every teacher on
    every sentence (an ensemble), or, with ``corpus``, each teacher on the sentences of the named parts of a
    ``concat`` corpus only (routing: per-language teachers into one student)."""
    entries = section if isinstance(section, list) else [section]
    if not entries:
        raise ConfigError("teacher: an empty list; give one teacher or a list of {path, type, weight}")
    out = []
    for i, entry in enumerate(entries):
        where = f"teacher[{i}]" if isinstance(section, list) else "teacher"
        allowed = set(TEACHER_KEYS) if isinstance(section, list) else set(TEACHER_KEYS) - {"weight", "corpus"}
        if isinstance(entry, Mapping):
            if set(entry) - allowed:
                raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(set(entry) - allowed))}")
            weight = entry.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
                raise ConfigError(f"{where}: weight must be a number >= 0, got {weight!r}")
            parts = entry.get("corpus")
            parts = [parts] if isinstance(parts, str) else parts
            if parts is not None and (not isinstance(parts, list) or not parts
                                      or not all(isinstance(p, str) for p in parts)):
                raise ConfigError(f"{where}: corpus must name a part of a concat corpus (or a list of names), "
                                  f"got {entry['corpus']!r}")
            out.append((where, {k: v for k, v in entry.items() if k not in ("weight", "corpus")}, float(weight),
                        parts))
        elif isinstance(entry, str):
            out.append((where, entry, 1.0, None))
        else:
            raise ConfigError(f"{where}: expected a path or {{path, type{', weight, corpus' if 'weight' in allowed else ''}}}, "
                              f"got {entry!r}")
    if sum(weight for _, _, weight, _ in out) <= 0:
        raise ConfigError("teacher: the weights sum to 0")
    return out


def _routed(specs, sentences) -> List:
    """The training sentences each teacher annotates: all of them (the dataset itself), or a list of those of
    its ``corpus`` parts; every sentence must fall to some teacher."""
    if all(parts is None for _, _, _, parts in specs):
        return [sentences for _ in specs]
    sentences = list(sentences)
    found = {part_of(s) for s in sentences}
    shares = []
    for where, _, _, parts in specs:
        if parts is None:
            shares.append(sentences)
            continue
        unknown = sorted(set(parts) - found)
        if unknown:
            known = sorted(str(p) for p in found if p is not None)
            raise ConfigError(f"{where}: corpus {', '.join(map(repr, unknown))} names no part of the training text "
                              f"({'its concat parts: ' + ', '.join(known) if known else 'it is not a concat corpus'})")
        shares.append([s for s in sentences if part_of(s) in parts])
    if all(parts is not None for _, _, _, parts in specs):
        routed = set().union(*(parts for _, _, _, parts in specs))
        missed = [s for s in sentences if part_of(s) not in routed]
        if missed:
            raise ConfigError(f"teacher: {len(missed)} training sentences belong to no teacher's corpus (e.g. "
                              f"{missed[0].to_tokenized_string()[:60]!r}, part {part_of(missed[0])!r})")
    return shares


def _cross_fit_keys(specs, sentences) -> List[Set[str]]:
    """The keys of the training sentences each teacher annotates under ``kd.cross_fit`` (``cross_fit_shares``),
    from each teacher's list of its own training sentences (every teacher loaded once more for it)."""
    taught = []
    for where, spec, _, _ in specs:
        teacher = load_model(spec, where=where)
        taught.append(teacher_training_keys(teacher))
        del teacher
    return [{sentence_key(s) for s in share} for share in cross_fit_shares(taught, sentences)]


def _distillation_setup(config, needs_trainer: bool):
    """(training corpus, student, teacher targets) of a distillation configuration; with several teachers
    each annotates (and caches) on its own, one loaded at a time, and their targets are mixed."""
    _require(config, "corpus", "teacher", "model", "kd", *(("trainer",) if needs_trainer else ()))
    kd = _check_kd(config["kd"] or {})
    _set_seed(config)
    corpus = load_corpus(config["corpus"])
    unlabelled = load_corpus(config["unlabelled"]) if config.get("unlabelled") else None
    train_corpus = training_corpus(corpus, unlabelled)
    student, members = None, []
    specs = _teacher_specs(config["teacher"])
    sentences = train_corpus.train  # a dataset: a lazily read one is not held whole (see annotate)
    if kd["cross_fit"] and len(specs) < 2:
        raise ConfigError("kd.cross_fit: needs a list of teachers trained on different parts of the gold data (each "
                          "sentence is taught only by those that never trained on it)")
    shares = _routed(specs, sentences)
    crossed = _cross_fit_keys(specs, sentences) if kd["cross_fit"] else None
    for i, ((where, spec, weight, _), share) in enumerate(zip(specs, shares)):
        teacher = load_model(spec, where=where)
        if unlabelled is not None and unlabelled.train is not None:
            check_unlabelled(teacher, unlabelled.train, allow_leak=kd["allow_label_leak"])
        if student is None:  # vocabularies see the unlabelled text too; tag dictionaries the (first) teacher's
            student = build_model(config["model"], train_corpus, teacher=teacher)
        if crossed is not None:
            share = [s for s in share if sentence_key(s) in crossed[i]]
            log.info(f"{where}: cross-fitting, annotates {len(share)} training sentences (those it never trained on)")
        members.append((annotate(teacher, share, student, kd["objective"],
                                 cache_dir=kd["cache_dir"], batch_size=kd["batch_size"], threshold=kd["threshold"],
                                 shard_every=kd["shard_every"], allow_missing_labels=kd["allow_missing_labels"]),
                        weight))
        del teacher
    if len(members) == 1:
        return train_corpus, student, members[0][0], kd
    from .mixture import TeacherMixture

    try:
        return train_corpus, student, TeacherMixture(members), kd
    except ValueError as error:
        raise ConfigError(f"teacher: {error}") from error


def distill(config, overwrite: bool = False, nproc: Optional[int] = None) -> Dict[str, Any]:
    """Distil a teacher into a student: annotate (cached), then train with the DistillationPlugin (resumable as
    ``train_model``). With ``nproc`` > 1 (or ``trainer.multi_gpu``) each of that many processes annotates a
    share of the sentences and the student trains data-parallel."""
    config = check_config(load_config(config))
    _require(config, "corpus", "teacher", "model", "kd", "trainer")
    launched = _in_processes(distill, config, overwrite, nproc)
    if launched is not None:
        return launched
    train_corpus, student, targets, kd = _distillation_setup(config, needs_trainer=True)
    plugin = DistillationPlugin(targets, mix=kd["mix"], probe_gradients=kd["probe_gradients"])
    results = run_trainer(student, train_corpus, config["trainer"], plugins=[plugin], run_hash=config_hash(config),
                          overwrite=overwrite)
    results.update({"config": config, "kd": {"targets_key": targets.key, "annotation": targets.stats,
                                             "history": plugin.history}})
    _write_results(results["base_path"], results)
    return results


def annotate_only(config) -> Dict[str, Any]:
    """Compute (or find cached) the teacher targets of a distillation configuration."""
    _, _, targets, _ = _distillation_setup(check_config(load_config(config)), needs_trainer=False)
    return {"sentences": len(targets), "key": targets.key, "stats": targets.stats}


def _split(corpus: Corpus, split: str):
    data = getattr(corpus, split, None)
    if data is None:
        raise ConfigError(f"the corpus has no {split} split")
    return data


def evaluate_model(model_spec, corpus_spec, split: str = "test", gold_label_type: Optional[str] = None,
                   batch_size: int = 32) -> Dict[str, Any]:
    """Evaluate a saved model on a split; returns the main score and Flair's detailed report."""
    model = load_model(model_spec, where="model")
    corpus = load_corpus(corpus_spec)
    data = _split(corpus, split)
    label_type = gold_label_type or getattr(model, "evaluation_label_type", model.label_type)
    if not any(s.get_labels(label_type) for s in data) and not any(
            t.get_labels(label_type) for s in data for t in s):
        # Flair would score every prediction against nothing and report 0.0 as if it were a result
        raise ConfigError(f"the {split} split holds no '{label_type}' labels to evaluate against (its column "
                          f"format or the model's tag type is wrong; the model predicts '{model.label_type}')")
    result = model.evaluate(data, gold_label_type=label_type, mini_batch_size=batch_size)
    scores = {"/".join(k) if isinstance(k, tuple) else str(k): v for k, v in result.scores.items()}
    return {"main_score": result.main_score, "scores": scores, "detailed": result.detailed_results}


def predict_file(model_spec, input_path, output_path, input_format: str = "plain", batch_size: int = 32,
                 encoding: str = "utf-8", output_format: str = "auto") -> int:
    """Tag (or parse) every sentence of a file and write them in order (see ``predict_io`` for the formats;
    an empty input line is an empty sentence, kept in place). Returns the number of sentences."""
    from .predict_io import predict_to_file, read_input

    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise ConfigError(f"input file {input_path} does not exist")
    model = load_model(model_spec, where="model")
    return predict_to_file(model, read_input(input_path, input_format, encoding), output_path, output_format,
                           batch_size)


def measure_speed(model, sentences: Iterable[Sentence], batch_size: int = 32, repeats: int = 1) -> float:
    """Prediction throughput (sentences/s) from raw text: fresh sentences, embeddings computed and dropped per
    batch as in deployment; one warm-up batch is not timed."""
    texts = [[t.text for t in s] for s in sentences]
    best = float("inf")
    with eval_mode(model):
        model.predict([Sentence(t) for t in texts[:batch_size]], mini_batch_size=batch_size)
        for _ in range(repeats):
            fresh = [Sentence(t) for t in texts]
            start = time.perf_counter()
            model.predict(fresh, mini_batch_size=batch_size, embedding_storage_mode="none")
            best = min(best, time.perf_counter() - start)
    return len(texts) / best
