"""The configuration reference, generated from the code: ``python -m skd_flair.docs`` writes
``docs/configuration.md`` (``--check`` only compares, exit status 1 when the file is stale).

Every key, type and default comes from the registries (corpora, embeddings, models, KD objectives and mix
schedules) and the typed signatures that ``check`` validates against (``pipeline.kd_section``,
``pipeline.trainer_keys``, Flair's ``ModelTrainer.train`` / ``fine_tune`` / ``train_custom``); only the one-line
meanings are written here (Flair's trainer arguments take theirs from Flair's own docstring). A registered key
without a meaning is printed as ``MISSING`` and fails the tests, as does a committed file that differs from what
this module generates.
"""
from __future__ import annotations

import argparse
import inspect
import re
from collections import abc
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

DEFAULT_OUTPUT = Path("docs") / "configuration.md"
MISSING = "MISSING"
REQUIRED = "**required**"

# keys a registry passes to its factories itself, never written in a configuration
INJECTED = {"corpus", "teacher"}

# ---------------------------------------------------------------------------------------------------------------
# one-line meanings: "<registry>" holds the keys shared by its types, "<registry>.<type>" what is specific to one

_CORPUS_COMMON = {
    "data_folder": "folder holding the split files (file names are relative to it)",
    "train_file": "training split file name (found by name in `data_folder` when not given and `autofind_splits`)",
    "dev_file": "development split file name (missing: sampled from train when `sample_missing_splits`)",
    "test_file": "test split file name (missing: sampled from train when `sample_missing_splits`)",
    "autofind_splits": "find train/dev/test files by name (`train`, `dev`, `test`, `testa`, `testb`) when not given",
    "in_memory": "keep the sentences in memory (Flair's `in_memory`)",
    "name": "corpus name shown in logs and results (default: the folder or file names)",
    "sample_missing_splits": "Flair's: a missing dev or test split is a seeded random 10% of train (`true`, "
                             "`false`, or `\"only_dev\"` / `\"only_test\"`)",
    "skip_train": "drop the first k training sentences first (e.g. those another configuration uses as gold data)",
    "sample_train": "keep only the first k training sentences (after sampling missing splits; 0 drops the split)",
    "sample_dev": "keep only the first k dev sentences (0 drops the split)",
    "sample_test": "keep only the first k test sentences (0 drops the split)",
    "seed": "seed of the random split when a dev or test split is sampled, so a corpus is always the same",
    "leave_out_fold": "`{folds: K, fold: i}`: train on every fold but i (documents dealt to the folds in turn, "
                      "or sentences where there are no document boundaries), e.g. cross-fitted teachers",
    "column_delimiter": "regular expression separating the columns of a line",
    "comment_symbol": "lines starting with it are skipped (off by default: Flair's `\"# \"` drops `#` tokens)",
    "encoding": "text encoding of the files (an undecodable line is an error naming file and line)",
    "docstart": "document separator token (`-DOCSTART-`); null: none",
    "drop_docstart": "drop the `docstart` one-token sentences (else kept as Flair document boundaries)",
    "strip_prefix": "per-token prefix to remove, such as WikiANN's `en:`",
}

MEANINGS: Dict[str, Dict[str, str]] = {
    "corpus": _CORPUS_COMMON,
    "corpus.column": {
        "column_format": "column number to name, `{0: text, 1: ner}`, or the list `[text, ner]`",
        "skip_first_line": "skip a header line at the top of each file",
        "allow_extra_columns": "accept lines with more columns than `column_format` names",
        "label_name_map": "rename labels while reading (`{PER: person}`; Flair's `label_name_map`)",
    },
    "corpus.ud": {
        "split_multiwords": "keep on: with it off Flair does not renumber heads around multiword tokens",
    },
    "corpus.flair": {
        "dataset": "class name in `flair.datasets` (`CONLL_03`, `WNUT_17`, `UD_ENGLISH`, ...); downloads",
        "kwargs": "arguments of that class (e.g. `{base_path: ...}`), checked against its signature",
        "seed": "unused (Flair's dataset classes split themselves); accepted like every corpus type's",
    },
    "corpus.text": {
        "data_folder": "optional folder the split names are relative to",
        "train_file": "training text: a file, a directory (its files, sorted) or a glob pattern (`news/*.txt`)",
        "dev_file": "dev text: a file, a directory or a glob pattern",
        "test_file": "test text: a file, a directory or a glob pattern",
        "format": "`plain` (one sentence a line) or `column` (the `text_column` of a column file)",
        "tokenize": "plain format: tokenise with Flair's segtok tokenizer instead of splitting on whitespace",
        "text_column": "column format: the column holding the tokens (the others are dropped)",
        "sample_missing_splits": "sample a missing dev or test split from train (off for unlabelled text)",
    },
    "corpus.concat": {
        "corpora": "the member corpus specs (each any type, with its own sampling keys), concatenated in order",
        "sample_missing_splits": "sample a missing split of the concatenation (off: each member samples its own)",
    },
    "embeddings": {
        "name": "the embedding's name (Flair caches vectors on tokens by name: teacher and student must differ)",
        "fine_tune": "train the embedding's weights with the model",
        "field": "token label to embed instead of the text (e.g. `upos`)",
        "force_cpu": "keep the vector table on the CPU",
        "stable": "Flair's `stable`: layer-normalised, scaled embeddings for stable training",
        "layers": "transformer layers to use (`\"-1\"`, `\"-1,-2,-3,-4\"`, `all`, or a list)",
        "subtoken_pooling": "how a word's subtokens become one vector: `first`, `last`, `first_last` or `mean`",
        "layer_mean": "average the chosen layers instead of concatenating them",
        "allow_long_sentences": "split sentences longer than the transformer's window instead of failing",
        "use_context": "add the surrounding sentences as context (true, or how many tokens)",
    },
    "embeddings.transformer": {
        "model": "hub id (`bert-base-multilingual-cased`) or a local transformers model folder",
        "transformers_tokenizer_kwargs": "extra arguments of the Hugging Face tokenizer",
        "transformers_config_kwargs": "extra arguments of the Hugging Face model configuration",
        "transformers_model_kwargs": "extra arguments of the Hugging Face model",
    },
    "embeddings.pieces": {
        "model": "hub id or local transformers model folder whose tokenizer and input piece table are read "
                 "(its layers never run)",
        "pooling": "how a word's pieces become one vector: `mean` or `first`",
    },
    "embeddings.flair": {
        "model": "Flair character-LM name (`news-forward`, `de-backward`, ...) or a local `.pt` file",
        "chars_per_chunk": "characters per LM batch (memory against speed)",
        "with_whitespace": "feed the whitespace after each token to the LM",
        "tokenized_lm": "the LM was trained on tokenised text",
        "is_lower": "lowercase the text before the LM",
    },
    "embeddings.word": {
        "embeddings": "gensim KeyedVectors file, word2vec `.txt`/`.vec`/`.bin`, or a Flair name (`glove`, `de`)",
        "no_header": "the word2vec text file has no `count dim` header line",
    },
    "embeddings.fasttext": {
        "embeddings": "fastText with subwords: gensim `.kv`/model file, facebook `.bin`, or an http(s) URL",
    },
    "embeddings.char": {
        "char_dict": "a saved Flair character `Dictionary` (default: built from the corpus, never downloaded)",
        "char_embedding_dim": "size of each character vector",
        "hidden_size_char": "character BiLSTM size per direction (the embedding is twice this)",
        "min_freq": "characters rarer than this in the corpus map to `<unk>`",
    },
    "embeddings.glove": {
        "cache": "folder for the converted vectors (default `$SKD_FLAIR_CACHE/embeddings`)",
    },
    "embeddings.onehot": {
        "field": "token attribute to embed (`text`, or a label type such as `upos`)",
        "min_freq": "values rarer than this in the corpus map to `<unk>`",
        "embedding_length": "vector size",
    },
    "model": {
        "tag_type": "the label type to learn and predict (`ner`, `upos`, ...)",
        "embeddings": "embedding spec or list of specs (stacked); see *model.embeddings*",
        "tag_dictionary": "labels from the `corpus`, or from the `teacher` (students of unlabelled text)",
        "hidden_size": "BiLSTM size per direction",
        "rnn_layers": "BiLSTM depth",
        "dropout": "dropout on the embeddings and the LSTM output",
        "word_dropout": "probability of dropping a whole word's embedding",
        "locked_dropout": "dropout with one mask over the sentence (variational)",
        "reproject_embeddings": "a linear layer on the embeddings before the LSTM",
        "relation_type": "token label type of the dependency relations",
        "root_relation": "relation of the word attached to ROOT (UD: `root`); null: no constraint",
        "main_metric": "main evaluation score: `las`, `uas`, `las_nopunct` or `uas_nopunct`",
    },
    "model.tagger": {
        "use_crf": "a CRF over the tags (cases 1a, 3); false: per-token softmax, MaxEnt (2a, 4)",
        "bidirectional": "a bidirectional RNN",
        "rnn_type": "the recurrent layer",
        "use_rnn": "false: tag straight from the (reprojected) embeddings",
        "tag_format": "span encoding of the tags",
        "kd_objective": "KD objective stored in the model (set from `kd.objective` when distilling)",
    },
    "model.span_ner": {
        "max_width": "longest candidate span in tokens (null: no limit); longer gold spans are left out",
        "objective": "`span` (per-span cross-entropy, Yu et al.) or `structured` (log Z of the span set)",
        "mlp_size": "width of the start and end MLPs",
        "mlp_dropout": "dropout after the start and end MLPs",
        "rnn_layers": "BiLSTM depth (0: no LSTM)",
    },
    "model.parser": {
        "hidden_size": "BiLSTM size per direction",
        "lstm_layers": "BiLSTM depth (0: MLPs straight on the embeddings)",
        "arc_mlp": "size of the arc scorer's MLPs",
        "rel_mlp": "size of the relation scorer's MLPs",
        "dropout": "dropout on embeddings, between and after LSTM layers, and in the MLPs",
        "objective": "`crf` (tree CRF) or `local` (head selection; mean field for second order)",
        "projective": "projective trees (Eisner) instead of non-projective (Matrix-Tree, MST)",
        "second_order": "add adjacent-sibling scores (case 2b teacher)",
        "sibling_mlp": "size of the sibling scorer's MLPs (second order)",
        "inference": "second order: `exact` (second-order Eisner, projective) or `mfvi` (mean field)",
        "mfvi_iterations": "mean-field updates (`inference: mfvi`)",
        "single_root": "exactly one word attached to ROOT",
    },
    "model.dependency_tagger": {
        "tag_type": "token label type of the offset tags `\"{h-i}_{rel}\"` (derived from heads when absent)",
        "repair": "how predicted tags become trees: `mst`, `eisner`, `top3` or `none`",
    },
    "kd objective": {
        "temperature": "T: teacher distributions are `q^(1/T)` (local) or scores / T (global); KD terms carry T^2",
        "temperature_mode": "`local` (each position's distribution tempered, the reference) or `global`",
    },
    "kd objective.structural": {
        "arc_marginals": "parsing teachers: exact `tree` marginals or the reference's per-word `local` softmax",
        "unknown_tags": "teacher arcs the student has no tag for: `renormalize`, `unk` (onto `<unk>`) or `error`",
    },
    "kd objective.topk": {
        "k": "how many of the teacher's best sequences",
        "weighted": "weight them by their renormalised teacher probabilities (Top-WK) instead of uniformly",
    },
    "mix schedule.constant": {
        "weight": "lambda of `lambda * L_KD + (1 - lambda) * L_gold` (1: KD only, 0: gold only)",
    },
    "mix schedule.annealed": {
        "factor": "lambda = max(0, 1 - epochs * factor / 100): pure KD first, gold only after 100 / factor epochs",
    },
    "kd": {
        "objective": "KD objective: a type name or `{type: ..., ...}`; see *kd.objective*",
        "mix": "mixing schedule of KD and gold loss; see *kd.mix*",  # + what null means, from DEFAULT_MIX
        "cache_dir": "folder of the teacher-target cache (default `$SKD_FLAIR_CACHE/targets`)",
        "batch_size": "teacher batch size while annotating",
        "threshold": "teacher probabilities below this are not stored",
        "shard_every": "flush the annotation to disk every this many sentences (an interruption resumes there)",
        "allow_label_leak": "accept unlabelled text whose gold labels trained the teacher",
        "cross_fit": "with a list of teachers: each training sentence is taught only by the teachers that never "
                     "trained on it (teachers trained on different parts of the gold data; see README, cross-fitting)",
        "allow_missing_labels": "accept student tags the teacher never predicts (logs how many tokens carry them)",
        "probe_gradients": "log per epoch the gradient norms of the KD and the gold term on one fixed batch",
    },
    "teacher": {
        "path": "the teacher model: a local `.pt` file, a run folder (the model it kept) or a hub id",
        "type": "its model type (the class that loads it)",
        "weight": "in a list of teachers: its share of the mixture (weights are normalised)",
        "corpus": "in a list of teachers: the `name`(s) of the `concat` corpus parts it annotates (routing, e.g. "
                  "one teacher per language); omitted: every sentence",
    },
    "trainer": {
        "base_path": "run folder: models, `loss.tsv`, `kd_loss.tsv`, `training.log`, `results.json`",
        "method": "Flair's `ModelTrainer.train` (SGD with annealing on plateau) or `fine_tune` (AdamW, warm-up)",
        "optimizer": "optimizer by name (default: Flair's, SGD for `train`, AdamW for `fine_tune`)",
        "optimizer_kwargs": "extra optimizer arguments (`{weight_decay: 0.01}`)",
        "plugins": "Flair logger plugins by name; `tensorboard`: Flair's TensorboardLogger into "
                   "`<base_path>/tensorboard` (train and KD metrics; `pip install 'skd_flair[tensorboard]'`)",
        "max_minutes": "wall-clock budget: training stops cleanly once it is spent (checked after every batch); the "
                       "test score is the kept weights' (the last, or the best dev epoch's so far), `results.json` "
                       "says `\"stopped_early\": \"time budget\"`",
        "length_buckets": "batches of sentences of similar length (shuffled windows sorted by length, batches in random "
                          "order): less padding for the LSTM to run over (`benchmarks/bench_length_buckets.py`)",
        "multi_gpu": "data-parallel training through Flair's DistributedDataParallel: `true` alone starts one "
                     "process a local GPU; `--nproc N` on `train`/`distill` sets it and starts N (gloo on CPU); "
                     "under `torchrun` it is set for you",
        "use_final_model_for_eval": "unset or `true` (the default since 2026-12-05): the run keeps and tests the "
                                    "weights training ended with, `final-model.pt`; `false` (Flair's own default for "
                                    "`train`): the best dev epoch's, `best-model.pt`. The last weights scored higher "
                                    "on 41 of 53 paired runs when the default was switched (+0.43 F1; `experiments/RESULTS.md` "
                                    "keeps the count)",
        "save_final_model": "with `use_final_model_for_eval: false` and unset, a run keeps one model, `best-model.pt` "
                            "when a dev split chose one, else `final-model.pt`; `true` keeps the last epoch's as "
                            "well, `false` never writes it",
        "embeddings_storage_mode": "`cpu`/`gpu` keep computed embeddings on the sentences between epochs, `none` "
                                   "drops them; trainable ones (characters, one-hot words, a fine-tuned "
                                   "transformer) are always recomputed before each evaluation "
                                   "(`FreshEvaluationEmbeddingsPlugin`: Flair alone would keep the dev "
                                   "sentences' epoch-1 vectors)",
        # Flair's train-only and fine_tune-only arguments (its docstring documents train_custom's only)
        "anneal_factor": "learning rate factor when the dev score did not improve for `patience` epochs",
        "patience": "epochs without dev improvement before the learning rate is annealed",
        "min_learning_rate": "training stops once the learning rate falls below this",
        "initial_extra_patience": "extra patience before the first annealing",
        "anneal_with_restarts": "reload the best model whenever the learning rate is annealed",
        "attach_default_scheduler": "attach Flair's default scheduler (annealing for `train`, linear for "
                                    "`fine_tune`)",
        "warmup_fraction": "fraction of the steps with a linearly rising learning rate",
        "epoch": "epochs already done (set by resuming; leave it unset)",
        "sampler": "a Flair sampler object (Python API only)",
        "gold_label_dictionary_for_eval": "a Flair `Dictionary` to evaluate against (Python API only)",
    },
    "top": {
        "seed": "random seed of the run (`flair.set_seed`): Python, NumPy and torch",
        "name": "a free label for the run, kept in `results.json`",
        "corpus": "the labelled data; see *corpus*",
        "unlabelled": "more training text that learns from the teacher only (distil); a corpus spec",
        "teacher": "the model to distil from (distil, annotate); see *teacher*",
        "model": "the model to train; see *model*",
        "kd": "how to distil; see *kd*",
        "trainer": "Flair's ModelTrainer arguments and the run folder; see *trainer*",
    },
}

# types the signatures leave unannotated or say in a form a YAML writer does not use
TYPE_OVERRIDES = {
    ("model", "embeddings"): "spec or list of specs",
    ("trainer", "optimizer"): '"SGD" or "Adam" or "AdamW"',
    ("trainer", "main_evaluation_metric"): "list of 2 str",
    ("top", "seed"): "int",
    ("top", "name"): "str",
}


# ---------------------------------------------------------------------------------------------------------------
# types and defaults as text


def _bound(meta) -> Tuple[Optional[str], Optional[str]]:
    low = high = None
    for attr, sign in (("ge", "≥"), ("gt", ">")):
        if getattr(meta, attr, None) is not None:
            low = f"{sign} {getattr(meta, attr)}"
    for attr, sign in (("le", "≤"), ("lt", "<")):
        if getattr(meta, attr, None) is not None:
            high = f"{sign} {getattr(meta, attr)}"
    return low, high


def type_text(hint: Any) -> str:
    """A type as a YAML writer reads it: ``int ≥ 1``, ``float in [0, 1)``, ``"LSTM" or "GRU"``, ``str or null``."""
    if hint is None or hint is inspect.Parameter.empty:
        return "any"
    if hint is type(None):
        return "null"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        base, low, high = type_text(args[0]), None, None
        for meta in args[1:]:
            lo, hi = _bound(meta)
            low, high = lo or low, hi or high
        if low and high and low[0] in "≥>" and high[0] in "≤<":
            left = "[" if low[0] == "≥" else "("
            right = "]" if high[0] == "≤" else ")"
            return f"{base} in {left}{low[2:]}, {high[2:]}{right}"
        return " ".join(p for p in (base, low, high) if p)
    if origin is typing.Literal:
        return " or ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in args)
    if origin is typing.Union:
        parts = [type_text(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("null")
        return " or ".join(dict.fromkeys(parts))
    if isinstance(origin, type) and issubclass(origin, (list, tuple, abc.Sequence)) and not issubclass(origin, str):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"list of {len(args)} {type_text(args[0])}" if len(set(args)) == 1 else "list"
        inner = type_text(args[0]) if args else ""
        return f"list of ({inner})" if " or " in inner else f"list of {inner}" if inner else "list"
    if origin is type:
        return "class"
    if isinstance(origin, type) and issubclass(origin, abc.Mapping) or hint in (dict, Mapping):
        return "mapping"
    if hint is Any:
        return "any"
    if isinstance(hint, type):
        if issubclass(hint, Path):
            return "path"
        return hint.__name__
    return str(hint).replace("typing.", "")


def default_text(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return REQUIRED
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, type):
        return f"`{value.__name__}`"
    if isinstance(value, (tuple, list)):
        return "`[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in value) + "]`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _meaning(scope: str, kind: str, key: str, documented: Optional[Dict[str, str]] = None) -> str:
    return (MEANINGS.get(f"{scope}.{kind}", {}).get(key) or (documented or {}).get(key)
            or MEANINGS.get(scope, {}).get(key) or MISSING)


_ARG_LINE = re.compile(r"^    (\w+): (.+)$")


def docstring_args(factory: Callable[..., Any]) -> Dict[str, str]:
    """``{key: meaning}`` from the ``Args:`` section of a factory's docstring (``    key: meaning``, continued on
    deeper-indented lines), so a newly registered component documents its keys where it is defined."""
    out: Dict[str, str] = {}
    doc = inspect.getdoc(factory) or ""
    last = None
    for line in doc.partition("Args:")[2].splitlines():
        match = _ARG_LINE.match(line)
        if match:
            last = match.group(1)
            out[last] = match.group(2).strip()
        elif last and line.startswith("        ") and line.strip():
            out[last] += " " + line.strip()
        elif line.strip():
            break
    return out
    last = None
    for line in doc.split("Args:", 1)[1].splitlines():
        match = _ARG_LINE.match("    " + line) if not line.startswith(" ") else None
        if match:
            last = match.group(1)
            out[last] = match.group(2).strip()
        elif last and line.startswith("    ") and line.strip():
            out[last] += " " + line.strip()
        elif line.strip() == "":
            last = None
    return out


# ---------------------------------------------------------------------------------------------------------------
# rows


Row = Tuple[str, str, str, str]  # key, type, default, meaning


def signature_rows(factory: Callable[..., Any], scope: str, kind: str = "", skip: Iterable[str] = ()) -> List[Row]:
    """One row per configuration key of `factory` (a registered function or class, or a section signature)."""
    from .registry import _hints

    hints = _hints(factory)
    documented = docstring_args(factory)
    rows = []
    for name, param in inspect.signature(factory).parameters.items():
        if name in ("self", "return") or name in skip or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        hint = TYPE_OVERRIDES.get((scope, name)) or type_text(hints.get(name, param.annotation))
        rows.append((name, hint, default_text(param.default), _meaning(scope, kind, name, documented)))
    return rows


def registry_keys(registry) -> Dict[str, List[str]]:
    """type name -> the configuration keys of that type (what a user may write beside ``type``)."""
    out = {}
    for name in registry.names():
        params = inspect.signature(registry.get(name)).parameters
        out[name] = [k for k, p in params.items() if k not in INJECTED and k != "self"
                     and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    return out


def _flair_arg_docs() -> Dict[str, str]:
    """Flair's own one-line meanings of its trainer arguments (the Args section of ``train_custom``)."""
    from flair.trainers import ModelTrainer

    doc = inspect.getdoc(ModelTrainer.train_custom) or ""
    block = doc.split("Args:", 1)[-1].split("Returns:", 1)[0]
    out, key = {}, None
    for line in block.splitlines():
        match = re.match(r"^    (\*{0,2}\w+)(?: \([^)]*\))?: (.*)$", line)
        if match:
            key = match.group(1)
            out[key] = match.group(2).strip()
        elif key and line.startswith("        "):
            out[key] += " " + line.strip()
    return {k: v.rstrip(".") for k, v in out.items()}


def trainer_rows() -> List[Row]:
    """skd_flair's own trainer keys, then Flair's ModelTrainer arguments with their ``train`` and ``fine_tune``
    defaults (a key of one method only is refused with the other)."""
    from flair.trainers import ModelTrainer

    from .registry import _hints
    from .training.pipeline import _TRAINER_RANGES, trainer_keys

    rows = [(k, t, d, m) for k, t, d, m in signature_rows(trainer_keys, "trainer")]
    own = {r[0] for r in rows}
    flair_docs = _flair_arg_docs()
    methods = {m: inspect.signature(getattr(ModelTrainer, m)).parameters for m in ("train", "fine_tune")}
    custom = inspect.signature(ModelTrainer.train_custom).parameters
    hints = {**_hints(ModelTrainer.train_custom), **_hints(ModelTrainer.fine_tune), **_hints(ModelTrainer.train)}
    names = list(dict.fromkeys([*methods["train"], *methods["fine_tune"], *custom]))
    own_defaults = _own_defaults()
    for name in names:
        if name in ("self", "kwargs", "plugins", "base_path") or name in own:
            continue
        defaults = []
        for params in methods.values():
            if name in params:
                defaults.append(params[name].default)
            elif name in custom:  # passed on to train_custom through **kwargs
                defaults.append(custom[name].default)
            else:
                defaults.append(_ABSENT)
        hint = TYPE_OVERRIDES.get(("trainer", name)) or type_text(_TRAINER_RANGES.get(name, hints.get(name)))
        train, fine = (default_text(d) if d is not _ABSENT else "-" for d in defaults)
        default = train if train == fine else f"{train} (train), {fine} (fine_tune)"
        if name in own_defaults:  # run_trainer fills it in when a configuration leaves it unset
            default = f"{default_text(own_defaults[name])} (skd_flair's; Flair's: {default})"
        if train == "-":
            default = f"{fine} (fine_tune only)"
        elif fine == "-":
            default = f"{train} (train only)"
        meaning = MEANINGS["trainer"].get(name) or flair_docs.get(name) or MISSING
        rows.append((name, hint, default, meaning))
    return rows


_ABSENT = object()


def _own_defaults() -> Dict[str, Any]:
    """Flair arguments whose default skd_flair changes, as the code applies them."""
    from .training.pipeline import keeps_last_weights

    return {"use_final_model_for_eval": keeps_last_weights({})}


def _table(rows: Sequence[Row]) -> List[str]:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {_cell(t)} | {_cell(d)} | {_cell(m)} |" for k, t, d, m in rows]
    return lines


def _first_line(obj) -> str:
    """The first sentence of a docstring (not cut at "e.g." or "et al."), with Markdown's single backticks."""
    doc = inspect.getdoc(obj) or ""
    paragraph = re.sub(r":\w+:`", "`", " ".join(doc.split("\n\n")[0].split()).replace("``", "`"))
    first = re.split(r"(?<!\be\.g)(?<!\bal)\.\s+(?=[A-Z(`])", paragraph)[0]
    return first.rstrip(".") + "." if first else ""


def _registry_block(registry, scope: str, heading: str, path: str) -> List[str]:
    lines = []
    for name in registry.names():
        factory = registry.get(name)
        lines += ["", f"{heading} `{path}: {{type: {name}}}`", "", _first_line(factory), ""]
        lines += _table(signature_rows(factory, scope, name, skip=INJECTED))
    return lines


# ---------------------------------------------------------------------------------------------------------------
# the document


def reference() -> str:
    """The whole configuration reference as Markdown (deterministic: the same code gives the same text)."""
    from .distill import DEFAULT_MIX, MIX_SCHEDULES, OBJECTIVES
    from .training.corpora import CORPORA
    from .training.embeddings import EMBEDDINGS
    from .training.models import MODEL_CLASSES, MODELS
    from .training.pipeline import SECTIONS, kd_section

    top_hints = {"corpus": "corpus spec", "unlabelled": "corpus spec", "teacher": "path, mapping or list",
                 "model": "model spec", "kd": "mapping", "trainer": "mapping"}
    lines = [
        "# Configuration reference",
        "",
        "<!-- generated by `python -m skd_flair.docs` from the registries and typed signatures; do not edit -->",
        "",
        "A configuration is a YAML file (or a dict) of sections. Every component is built by a registered `type`, "
        "and `skd-flair check` validates each key's value against the type below (pydantic, strict: `\"yes\"` is "
        "not a boolean, `\"3\"` is not a number). `**required**` keys have no default; `-o section.key=value` "
        "overrides any key from the command line.",
        "",
        "## Sections",
        "",
        "| section | type | meaning |",
        "|---|---|---|",
    ]
    for section in SECTIONS:
        hint = TYPE_OVERRIDES.get(("top", section)) or top_hints.get(section, "any")
        lines.append(f"| `{section}` | {hint} | {_cell(_meaning('top', '', section))} |")

    lines += ["", "## corpus", "",
              "`corpus` (and `unlabelled`, which takes the same types) is `{type: <name>, ...}` with these keys per "
              "type. `skip_train`, `sample_*` and `seed` are common to every type."]
    lines += _registry_block(CORPORA, "corpus", "###", "corpus")

    lines += ["", "## model", "", "`model` is `{type: <name>, ...}`; `embeddings` is one embedding spec or a list "
              "of them (stacked), described under *model.embeddings*."]
    lines += _registry_block(MODELS, "model", "###", "model")
    lines += ["", "## model.embeddings", "",
              "Each entry is `{type: <name>, ...}` (or just the type name). Flair caches vectors on tokens by "
              "embedding name, so a teacher and its student must not share one (`name`)."]
    lines += _registry_block(EMBEDDINGS, "embeddings", "###", "embeddings[i]")

    teacher_rows = [("path", "str", REQUIRED, _meaning("teacher", "", "path")),
                    ("type", " or ".join(f'"{t}"' for t in sorted(MODEL_CLASSES)), default_text("tagger"),
                     _meaning("teacher", "", "type")),
                    ("weight", "float >= 0", default_text(1.0), _meaning("teacher", "", "weight")),
                    ("corpus", "str or list of str", "every sentence", _meaning("teacher", "", "corpus"))]
    lines += ["", "## teacher", "", "`teacher` is a path (or hub id) or a mapping; or a list of mappings, several "
              "teachers whose targets are mixed: each sentence learns from the weighted mean of their marginals over "
              "the student's parts, the exact cross-entropy to the teachers' mixture (one objective for all; not "
              "Top-K). Each teacher's targets are cached on their own, so a changed weight re-runs no teacher.", ""]
    lines += _table(teacher_rows)

    lines += ["", "## kd", "", "`kd` configures the distillation (`skd-flair distill` / `annotate`)."] + [""]
    default_mix = "{" + ", ".join(f"{k}: {v}" for k, v in DEFAULT_MIX.items()) + "}"
    lines += _table([(k, t, d, m + f" (null: the default recipe, `{default_mix}`)" if k == "mix" else m)
                     for k, t, d, m in signature_rows(kd_section, "kd")])
    lines += ["", "## kd.objective", "", "`kd.objective` is a type name or `{type: <name>, ...}`."]
    lines += _registry_block(OBJECTIVES, "kd objective", "###", "kd.objective")
    lines += ["", "## kd.mix", "", "`kd.mix` weighs the two losses: `lambda * L_KD + (1 - lambda) * L_gold`."]
    lines += _registry_block(MIX_SCHEDULES, "mix schedule", "###", "kd.mix")

    lines += ["", "## trainer", "",
              "The first keys are read by skd_flair; the rest are the arguments of Flair's "
              "`ModelTrainer.train` / `fine_tune` (`trainer.method`), with Flair's own defaults (one changed, "
              "marked) and meanings. A key "
              "of one method only is refused with the other.", ""]
    lines += _table(trainer_rows())
    return "\n".join(lines) + "\n"


def missing_meanings(text: Optional[str] = None) -> List[str]:
    """The table rows of the reference that have no meaning yet."""
    text = reference() if text is None else text
    return [line for line in text.splitlines() if line.startswith("|") and line.rstrip().endswith(f"{MISSING} |")]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skd_flair.docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", default=str(DEFAULT_OUTPUT), help="where to write (default %(default)s)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the file is stale")
    args = parser.parse_args(argv)
    text, path = reference(), Path(args.output)
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            print(f"{path} is stale: run python -m skd_flair.docs", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    missing = missing_meanings(text)
    print(f"wrote {path}" + (f" ({len(missing)} keys without a meaning)" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
