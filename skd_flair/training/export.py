"""``skd-flair export``: a smaller copy of a trained tagger student for shipping.

Three independent steps, each optional:

- **Vocabulary trimming.** A student's static word table (Flair ``WordEmbeddings`` over GloVe, or
  ``FastTextSubwordEmbeddings``) holds every word of the vector file: the 400k-word GloVe table is 80 MB of an
  89 MB student. :func:`trim_model` keeps only the rows that the words of a vocabulary (a word list and/or the
  tokens of a configuration's corpus and unlabelled text) can reach. For ``WordEmbeddings`` that is every key of
  Flair's lookup chain for the word (the word, its lowercase form, and the digit-normalised forms ``#`` and
  ``0``; see ``WordEmbeddings.get_cached_token_index``) that the table holds, plus the unknown row, so a word of
  the vocabulary gets exactly the vector it got before and any other word falls back to the unknown row, as an
  unknown word always did. For fastText the table's word vectors are trimmed the same way (exact keys, its only
  lookup); its n-gram matrix is kept whole, so a dropped word gets its n-gram vector instead of its word vector.
- **int8** (``quantize="int8"``): torch's dynamic quantisation of every ``nn.LSTM``/``nn.GRU``/``nn.Linear``
  layer (int8 weights, float activations, CPU only), and every ``WordEmbeddings`` table stored as per-row int8
  values and scales (a quarter of its bytes; float32 again once loaded, each entry within half a step of the
  original). Loading works through ``DistillableTagger.load_state_dict`` (see ``skd_flair.models.quantize``).
- **fp16** (``half=True``): the float32 parameters and buffers are stored as float16; loading copies them into
  the float32 model, so the loaded model computes in float32 (fp16 CPU inference is slow or unsupported).

The output is an ordinary Flair model file, written atomically, that ``load_model(path)``,
``DistillableTagger.load(path)`` and ``flair.nn.Model.load(path)`` read back; :func:`export_model` reloads it
once and tags a sentence before it reports success.

With ``format="onnx"`` (``skd-flair export MODEL FOLDER --format onnx``, after any trimming) the output is a
folder instead: ``model.onnx``, the student's graph from token ids to emission scores (the fast path's graph,
``skd_flair.models.fast_tagger``; exported with ``torch.onnx.export(dynamo=True)``), and ``tagger.json`` with the
labels, CRF parameters, word tables' words and character dictionary. ``skd_flair.onnx_runner`` tags text with it
using numpy and onnxruntime only. Needs the ``[export]`` extra (onnx, onnxscript, onnxruntime); students with
Flair ``WordEmbeddings`` tables and ``CharacterEmbeddings`` only (no fastText table). The export is checked
by tagging sentences with onnxruntime and with the model and comparing their tags. With ``quantize="int8"`` the
checked graph is then rewritten by onnxruntime's dynamic quantiser (word tables, LSTMs and Linear layers as
int8 weights; :func:`quantize_onnx`): a quarter of the float graph's bytes and no slower to run.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import pickle
import re
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Set, Tuple, Union

import torch
from flair.data import Sentence
from flair.embeddings import StackedEmbeddings, TokenEmbeddings, WordEmbeddings
from flair.file_utils import load_torch_state

from ..models import DistillableTagger, FastTextSubwordEmbeddings
from ..models.quantize import int8_rows, quantize_layers
from ..registry import ConfigError
from . import atomic_path

log = logging.getLogger("skd_flair")

__all__ = ["EXPORT_KEY", "FORMATS", "QUANTIZE_MODES", "corpus_vocabulary", "export_model", "export_onnx",
           "frequent_words",
           "export_state", "load_tagger",
           "lookup_forms", "read_vocabulary", "save_state", "static_tables", "trim_fasttext", "trim_model",
           "trim_word_embeddings"]

EXPORT_KEY = "skd_export"  # model-file state: what export did (informative; loading does not need it)
QUANTIZE_MODES = ("int8",)
FORMATS = ("flair", "onnx")
_LOAD_ERRORS = (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError,
                AttributeError, TypeError)
Path_ = Union[str, os.PathLike]
_EMPTY = ("export: the vocabulary is empty: give --vocab with at least one word and/or --corpus with a corpus "
          "that has tokens")


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"


def _mb(path: Path_) -> float:
    return round(os.path.getsize(path) / 2 ** 20, 3)


# ---------------------------------------------------------------------------------------------------------------
# loading


def _tagger_classes() -> Dict[str, type]:
    classes, todo = {}, [DistillableTagger]
    while todo:
        cls = todo.pop()
        classes[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    classes.setdefault("SequenceTagger", DistillableTagger)  # a plain Flair tagger reads as a DistillableTagger
    return classes


def load_tagger(path: Path_) -> DistillableTagger:
    """The tagger saved in `path` (a DistillableTagger or a subclass; a plain Flair SequenceTagger is read as a
    DistillableTagger). ConfigError, in one line, for a missing file, a file that is not a Flair model, or
    another kind of model."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"export: model file {path} does not exist")
    try:
        state = load_torch_state(str(path))
    except _LOAD_ERRORS as error:
        raise ConfigError(f"export: cannot read {path}: not a Flair model file ({_one_line(error)})") from error
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ConfigError(f"export: {path} is not a Flair model file (no state_dict)")
    kind = state.get("__cls__")
    classes = _tagger_classes()
    if kind not in classes:
        raise ConfigError(f"export: {path} holds a {kind or 'unnamed'} model, not a sequence tagger; export handles "
                          f"taggers ({', '.join(sorted(classes))}) only")
    try:
        return classes[kind].load(state)
    except _LOAD_ERRORS as error:
        raise ConfigError(f"export: cannot load {path} as a {kind}: {_one_line(error)}") from error


# ---------------------------------------------------------------------------------------------------------------
# vocabularies


def read_vocabulary(path: Path_) -> Set[str]:
    """The words of a UTF-8 file, one a line (surrounding whitespace and blank lines dropped, a BOM ignored)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"export: vocabulary file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"export: vocabulary file {path} is not UTF-8 ({_one_line(error)})") from error
    return {word for word in (line.strip() for line in text.split("\n")) if word}


def _dataset_words(dataset) -> Iterable[str]:
    for i in range(len(dataset) if dataset is not None else 0):
        for token in dataset[i]:
            yield token.text


def corpus_vocabulary(config_path: Path_) -> Set[str]:
    """The token texts of every split (train, dev, test) of a configuration's ``corpus`` section and of its
    ``unlabelled`` section when it has one, read by the same loader as ``skd-flair train`` / ``distill``."""
    from .corpora import load_corpus
    from .pipeline import load_config

    config = load_config(config_path)
    if not config.get("corpus"):
        raise ConfigError(f"export: configuration {config_path} has no corpus section")
    words: Set[str] = set()
    for section in ("corpus", "unlabelled"):
        if config.get(section):
            corpus = load_corpus(config[section])
            for split in (corpus.train, corpus.dev, corpus.test):
                words.update(_dataset_words(split))
    return words


# ---------------------------------------------------------------------------------------------------------------
# trimming


def lookup_forms(word: str) -> List[str]:
    """The keys Flair's ``WordEmbeddings.get_cached_token_index`` tries for `word`, in its order."""
    lower = word.lower()
    return [word, lower, re.sub(r"\d", "#", lower), re.sub(r"\d", "0", lower)]


def _kept_keys(table_vocab: Mapping[str, int], words: Iterable[str], forms) -> List[str]:
    """The keys of `table_vocab` that `words` reach through `forms(word)`, in the table's row order."""
    keys = {form for word in words for form in forms(word) if form in table_vocab}
    return sorted(keys, key=table_vocab.__getitem__)


def trim_word_embeddings(embedding: WordEmbeddings, words: Iterable[str]) -> WordEmbeddings:
    """A copy of `embedding` holding only the rows that `words` reach through Flair's lookup chain, and the
    unknown row (always last, as Flair expects). Every kept key keeps its vector; the layer norm of a
    ``stable`` table is copied."""
    old_rows = embedding.embedding.weight.shape[0]
    if old_rows != len(embedding.vocab) + 1:
        raise ConfigError(f"export: word table {embedding.name!r} has {old_rows} rows for {len(embedding.vocab)} "
                          f"words (+1 unknown); cannot trim it safely")
    keys = _kept_keys(embedding.vocab, words, lookup_forms)
    params = {**embedding.to_params(), "vocab": {key: i for i, key in enumerate(keys)}}
    trimmed = WordEmbeddings.from_params(params)
    rows = [embedding.vocab[key] for key in keys] + [len(embedding.vocab)]
    with torch.no_grad():
        weight = embedding.embedding.weight
        trimmed.embedding.weight.copy_(weight[torch.tensor(rows, dtype=torch.long, device=weight.device)])
    if embedding.layer_norm is not None:
        trimmed.layer_norm.load_state_dict(embedding.layer_norm.state_dict())
    trimmed.train(embedding.training)
    return trimmed


def trim_fasttext(embedding: FastTextSubwordEmbeddings, words: Iterable[str]) -> FastTextSubwordEmbeddings:
    """A copy of `embedding` whose word vectors are those of `words` (exact keys, its only lookup); the n-gram
    matrix is kept, so any other word gets its n-gram vector as an out-of-vocabulary word."""
    keys = _kept_keys(embedding.vocab, words, lambda word: (word,))
    rows = torch.tensor([embedding.vocab[key] for key in keys], dtype=torch.long, device=embedding.vectors.device)
    params = embedding.to_params()
    params["vocab"] = {key: i for i, key in enumerate(keys)}
    return FastTextSubwordEmbeddings(**params, vectors=embedding.vectors[rows].cpu().numpy(),
                                     ngram_vectors=embedding.ngram_vectors.cpu().numpy())


def static_tables(embeddings: TokenEmbeddings, parent: Optional[StackedEmbeddings] = None,
                  index: int = -1) -> List[Tuple[Optional[StackedEmbeddings], int, TokenEmbeddings]]:
    """``(stack, position, table)`` for every trimmable static word table in `embeddings` (stacks included);
    ``stack`` is None for a model whose embeddings are the table itself."""
    if isinstance(embeddings, StackedEmbeddings):
        return [found for i, member in enumerate(embeddings.embeddings)
                for found in static_tables(member, embeddings, i)]
    if type(embeddings) is WordEmbeddings or isinstance(embeddings, FastTextSubwordEmbeddings):
        return [(parent, index, embeddings)]
    return []


def frequent_words(model: DistillableTagger, n: int) -> List[str]:
    """The first `n` words of the model's first static word table in row order (GloVe and fastText list their
    words by frequency): what a user keeps besides their own text so that unseen text keeps its vectors."""
    tables = static_tables(model.embeddings)
    if not tables:
        return []
    vocab = tables[0][2].vocab
    return sorted(vocab, key=vocab.__getitem__)[:n]


def table_weight_keys(model: DistillableTagger) -> List[str]:
    """The state-dict keys of the weights of `model`'s Flair ``WordEmbeddings`` tables."""
    return [f"{name}.embedding.weight" for name, module in model.named_modules() if type(module) is WordEmbeddings]


def _replace(model: DistillableTagger, stack: Optional[StackedEmbeddings], index: int,
             table: TokenEmbeddings) -> None:
    if stack is None:
        model.embeddings = table
    else:
        stack.embeddings[index] = table
        stack.add_module(f"list_embedding_{index}", table)  # the registered module Flair's state_dict reads


def trim_model(model: DistillableTagger, words: Set[str]) -> List[Dict[str, Any]]:
    """Trim every static word table of `model` to `words`, in place; one report per table. A table that embeds
    a label field (``field`` set) instead of the token text is left whole."""
    if not words:
        raise ConfigError(_EMPTY)
    reports = []
    for stack, index, table in static_tables(model.embeddings):
        before = len(table.vocab)
        if table.field is not None:
            log.warning("export: word table %r embeds field %r, not the token text; kept whole", table.name,
                        table.field)
            reports.append({"name": table.name, "words_before": before, "words_after": before})
            continue
        trimmed = (trim_word_embeddings if isinstance(table, WordEmbeddings) else trim_fasttext)(table, words)
        _replace(model, stack, index, trimmed)
        log.info("export: word table %r: %d -> %d words", table.name, before, len(trimmed.vocab))
        if not trimmed.vocab:
            log.warning("export: no vocabulary word is in word table %r; every word now gets its unknown vector",
                        table.name)
        reports.append({"name": table.name, "words_before": before, "words_after": len(trimmed.vocab)})
    if not reports:
        log.warning("export: the model has no static word table (WordEmbeddings or fastText); nothing to trim")
    return reports


# ---------------------------------------------------------------------------------------------------------------
# saving


def export_state(model: DistillableTagger, half: bool = False, info: Optional[Mapping[str, Any]] = None) -> dict:
    """What ``model.save`` would write (Flair's ``_get_state_dict`` plus the model card), with the float32
    parameters and buffers as float16 when `half` (loading copies them back into float32), and `info` under
    ``EXPORT_KEY``."""
    state = model._get_state_dict()
    if model.model_card is not None:
        state["model_card"] = model.model_card
    if half:
        names = {name for name, tensor in [*model.named_parameters(remove_duplicate=False),
                                           *model.named_buffers(remove_duplicate=False)]
                 if tensor.dtype == torch.float32}
        weights = state["state_dict"]
        for key in list(weights):  # in place: the dict's _metadata (module versions) must survive
            if key in names and isinstance(weights[key], torch.Tensor):
                weights[key] = weights[key].half()
    if info is not None:
        state[EXPORT_KEY] = dict(info)
    return state


def save_state(state: dict, path: Path_) -> None:
    """``torch.save`` as Flair saves models, to a temporary file in the target's folder renamed onto `path`."""
    with atomic_path(path) as tmp:
        torch.save(state, str(tmp), pickle_protocol=4)


def _check_export(path: Path_, words: Iterable[str]) -> None:
    """Reload the exported file as ``DistillableTagger.load`` would and tag one sentence with it."""
    model = load_tagger(path)
    sample = list(itertools.islice(words, 8)) or ["export", "check"]
    model.predict(Sentence(sample))


# ---------------------------------------------------------------------------------------------------------------
# the command


def _wanted_words(vocab, corpus) -> Set[str]:
    """The words of --vocab and of --corpus's configuration together; an error when both were given nothing."""
    words: Set[str] = set()
    if vocab is not None:
        words |= read_vocabulary(vocab)
    if corpus is not None:
        words |= corpus_vocabulary(corpus)
    if (vocab is not None or corpus is not None) and not words:
        raise ConfigError(_EMPTY)
    return words


def export_model(model_path: Path_, out: Path_, vocab: Optional[Path_] = None, corpus: Optional[Path_] = None,
                 quantize: Optional[str] = None, half: bool = False, format: str = "flair") -> Dict[str, Any]:
    """Load the tagger in `model_path`, trim its word tables to the vocabulary of `vocab` (a word list) and/or
    `corpus` (a configuration file), optionally quantise (``"int8"``) and/or store fp16, and write it to `out`
    atomically; with ``format="onnx"``, write the folder `out` for ``skd_flair.onnx_runner`` instead (see the
    module docstring). Returns the summary that ``skd-flair export`` prints."""
    if format not in FORMATS:
        raise ConfigError(f"export: --format must be one of {', '.join(FORMATS)}, got {format!r}")
    if quantize is not None and quantize not in QUANTIZE_MODES:
        raise ConfigError(f"export: --quantize must be one of {', '.join(QUANTIZE_MODES)}, got {quantize!r}")
    if format == "onnx":
        return _export_onnx_command(model_path, out, vocab, corpus, quantize, half)
    if Path(out).is_dir():
        raise ConfigError(f"export: output {out} is a folder; give a file name such as {Path(out) / 'model.pt'}")
    if not Path(model_path).is_file():
        raise ConfigError(f"export: model file {model_path} does not exist")
    trim = vocab is not None or corpus is not None
    words = _wanted_words(vocab, corpus)
    model = load_tagger(model_path)
    tables = trim_model(model, words) if trim else []
    quantized = quantize_layers(model) if quantize == "int8" else []
    if quantize and not quantized:
        log.warning("export: the model has no float LSTM/GRU/Linear layer to quantise")
    elif quantized:
        log.info("export: int8 layers: %s", ", ".join(quantized))
    kept = sum(t["words_after"] for t in tables) if tables else None
    info = {"words_kept": kept, "vocabulary": len(words) if tables else None, "quantize": quantize,
            "quantized_layers": quantized, "half": bool(half)}
    # with int8 the word tables too: per-row int8 in the file, float32 again once loaded
    info["int8_tables"] = table_weight_keys(model) if quantize == "int8" else []
    state = export_state(model, half=half, info=info)
    int8_rows(state["state_dict"], info["int8_tables"])
    save_state(state, out)
    _check_export(out, (key for t in static_tables(model.embeddings) for key in t[2].vocab))
    summary = {"model": str(model_path), "output": str(out), "size_mb_before": _mb(model_path),
               "size_mb_after": _mb(out), **info, "tables": tables}
    log.info("export: %s (%.2f MB) -> %s (%.2f MB)", model_path, summary["size_mb_before"], out,
             summary["size_mb_after"])
    return summary


# ---------------------------------------------------------------------------------------------------------------
# ONNX


def _onnx_modules():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ConfigError(f"export --format onnx needs the [export] extra (pip install 'skd_flair[export]': onnx, "
                          f"onnxscript, onnxruntime); {_one_line(error)}") from error


def _check_sample(words: Iterable[str]) -> List[List[str]]:
    """The sentences an ONNX export is checked on: kept words, a number, punctuation, an unknown word."""
    return [sorted(words)[:8] or ["export", "check"], ["Export", "2024", "check", "-", "ÜNKNOWN"], ["x"]]


def _runner_tags(folder: Path, sample: List[List[str]]) -> List[List[str]]:
    """The runner's tag per token of `sample`; for a parser ``"{head}/{relation}"``."""
    from ..onnx_runner import OnnxParser, load

    runner = load(folder)
    if isinstance(runner, OnnxParser):
        return [[f"{h}/{r}" for h, r in zip(result["heads"], result["relations"])]
                for result in runner.predict(sample)]
    return [result["tags"] for result in runner.predict(sample)]


def _check_onnx(model: DistillableTagger, folder: Path, sample: List[List[str]]) -> List[List[str]]:
    """Tag `sample` with onnxruntime (through the runner) and with the model; ConfigError if tags (a parser's
    heads and relations) differ. Returns the runner's tags."""
    from ..models.dependency_tagger import DependencyTagger

    sentences = [Sentence(list(tokens)) for tokens in sample]
    tags = _runner_tags(folder, sample)
    if isinstance(model, DependencyTagger):
        model.predict(sentences)
        expected = [[f"{token.head_id}/{token.get_label(model.relation_type).value}" for token in sentence]
                    for sentence in sentences]
        got = tags
    else:
        model.predict(sentences, force_token_predictions=True)
        expected = [[token.get_label(model.tag_type).value if token.get_labels(model.tag_type) else "O"
                     for token in sentence] for sentence in sentences]
        got = [[tag if tag not in ("O", "_") else "O" for tag in sentence] for sentence in tags]
    if got != expected:
        raise ConfigError(f"export: the ONNX graph tags differently from the model ({got} vs {expected})")
    return tags


@contextlib.contextmanager
def _quiet_exporter():
    """The ONNX exporter prints its progress to stdout (kept for the command's JSON line), warns about traced
    attributes and logs each optimiser pass at INFO: its output goes to stderr, warnings and INFO are dropped."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
            warnings.simplefilter("ignore")
            for logger in loggers:
                logger.setLevel(logging.ERROR)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _clear_rnn_dispatch_caches() -> None:
    """The exporter swaps in while-loop LSTM/GRU decompositions (dynamic sequence length) by editing the ops'
    ``py_kernels`` directly, which leaves the ops' dispatch caches stale: a second export in one process traced
    the plain LSTM kernel and came out with the example's sentence and word lengths fixed in the graph."""
    for op in (torch.ops.aten.lstm.input, torch.ops.aten.gru.input):
        op._dispatch_cache.clear()


def _fold_weights(proto):
    """The exporter reorders each LSTM's gates by slicing and concatenating its weights at run time, and its
    optimiser folds that into constants only for tensors under 8,192 elements: a real word BiLSTM (4 x 256 x 356)
    kept float weights computed on every call, and onnxruntime's quantiser, which rewrites an LSTM only when its
    weights are initializers, left it in float32. Folding with limits above any weight fixes both."""
    import onnxscript.optimizer

    limit = max((math.prod(init.dims) for init in proto.graph.initializer), default=0) + 1
    return onnxscript.optimizer.optimize(proto, input_size_limit=limit, output_size_limit=limit)


def export_onnx(model: DistillableTagger, folder: Path_) -> Dict[str, float]:
    """Write ``model.onnx`` and ``tagger.json`` for `model` into `folder` (each file atomically); returns their
    sizes in MB. UnsupportedTagger (a ValueError) for a tagger the fast path cannot express."""
    import onnx

    from ..models.dependency_tagger import DependencyTagger
    from ..models.fast_parser import parser_config
    from ..models.fast_tagger import FastTagger, OnnxEmissions, onnx_input_names, runtime_config
    from ..onnx_runner import CONFIG_FILE, MODEL_FILE

    parser = isinstance(model, DependencyTagger)
    # a parser's graph ends at its output columns (tag or offset and relation scores); the runner decodes trees
    fast = FastTagger(model, emissions_only=parser).cpu()
    graph = OnnxEmissions(fast).eval()
    config = runtime_config(fast)
    if parser:
        config["parser"] = parser_config(model)
    names = onnx_input_names(fast)
    batch = fast.tensorize([["Export", "check", "a"], ["x"]])
    given = {"word_ids": batch.word_ids, "char_ids": batch.char_ids, "char_index": batch.char_index,
             "lengths": batch.lengths}
    dims = {name: torch.export.Dim(name) for name in ("B", "N", "U", "C")}
    shapes = {"word_ids": {0: dims["B"], 1: dims["N"]}, "char_ids": {0: dims["U"], 1: dims["C"]},
              "char_index": {0: dims["B"], 1: dims["N"]}, "lengths": {0: dims["B"]}}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    large = sum(p.numel() * p.element_size() for p in fast.parameters()) > 1.5 * 2 ** 30
    with atomic_path(folder / MODEL_FILE) as tmp, torch.no_grad(), _quiet_exporter():
        _clear_rnn_dispatch_caches()
        torch.onnx.export(graph, tuple(given[name] for name in names), str(tmp), input_names=names,
                          output_names=["emissions"], dynamic_shapes={"inputs": tuple(shapes[name] for name in names)},
                          dynamo=True, external_data=large, verbose=False)
        # the exporter leaves N static in the output's shape and in the shape hints after its LSTMs (the graph
        # itself is dynamic; onnxruntime would warn on every batch): name the output's dims, drop the hints
        proto = onnx.load(str(tmp), load_external_data=False)
        if not large:
            proto = _fold_weights(proto)
        for dim, name in zip(proto.graph.output[0].type.tensor_type.shape.dim, ("B", "N")):
            dim.dim_param = name
        del proto.graph.value_info[:]
        onnx.save(proto, str(tmp))
    with atomic_path(folder / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return {MODEL_FILE: _mb(folder / MODEL_FILE), CONFIG_FILE: _mb(folder / CONFIG_FILE)}


# the ops onnxruntime's dynamic quantiser rewrites: the word tables (Gather), the BiLSTMs and the output layer
ONNX_INT8_OPS = ("Gather", "LSTM", "MatMul", "Gemm")


def quantize_onnx(folder: Path, sample: List[List[str]], before: List[List[str]]) -> Tuple[Dict[str, float], float]:
    """Replace ``folder/model.onnx`` (float32, already checked against the model) by onnxruntime's dynamic int8
    quantisation of its word tables, LSTMs and Linear layers (weights stored as int8 with a scale; activations
    quantised per batch at run time). `before`: the float graph's tags of `sample`. Returns the files' sizes in
    MB and the fraction of those tags the int8 graph keeps: int8 may move a close decision, so a difference is
    logged, not refused."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ..onnx_runner import CONFIG_FILE, MODEL_FILE

    root = logging.getLogger()
    level = root.level
    with atomic_path(folder / MODEL_FILE) as tmp:
        try:  # the quantiser logs a pre-processing hint on the root logger at WARNING, for image models
            root.setLevel(logging.ERROR)
            # one scale per output channel: on the light CoNLL-03 student int8 then costs no F1 against the float
            # graph (86.89 both) where one scale per tensor cost 0.05, at the same size and speed
            quantize_dynamic(str(folder / MODEL_FILE), str(tmp), weight_type=QuantType.QInt8,
                             op_types_to_quantize=list(ONNX_INT8_OPS), per_channel=True)
        finally:
            root.setLevel(level)
    after = _runner_tags(folder, sample)
    pairs = [(a, b) for x, y in zip(before, after) for a, b in zip(x, y)]
    agreement = sum(a == b for a, b in pairs) / max(len(pairs), 1)
    if agreement < 1:
        log.warning("export: the int8 graph changes %d of %d check tags against the float32 one",
                    sum(a != b for a, b in pairs), len(pairs))
    return {MODEL_FILE: _mb(folder / MODEL_FILE), CONFIG_FILE: _mb(folder / CONFIG_FILE)}, round(agreement, 4)


def _export_onnx_command(model_path: Path_, out: Path_, vocab: Optional[Path_], corpus: Optional[Path_],
                         quantize: Optional[str], half: bool) -> Dict[str, Any]:
    from ..models.fast_tagger import UnsupportedTagger

    if half:
        raise ConfigError("export: --half applies to --format flair; an ONNX export keeps float32 weights, or int8 "
                          "ones with --quantize int8")
    if Path(out).is_file():
        raise ConfigError(f"export: --format onnx writes a folder; {out} is a file")
    if not Path(model_path).is_file():
        raise ConfigError(f"export: model file {model_path} does not exist")
    _onnx_modules()
    trim = vocab is not None or corpus is not None
    words = _wanted_words(vocab, corpus)
    model = load_tagger(model_path).eval()
    tables = trim_model(model, words) if trim else []
    try:
        files = export_onnx(model, out)
    except UnsupportedTagger as error:
        raise ConfigError(f"export: {error}") from error
    sample = _check_sample(words)
    float_tags = _check_onnx(model, Path(out), sample)
    agreement = None
    if quantize == "int8":
        files, agreement = quantize_onnx(Path(out), sample, float_tags)
    kept = sum(t["words_after"] for t in tables) if tables else None
    summary = {"model": str(model_path), "output": str(out), "format": "onnx", "size_mb_before": _mb(model_path),
               "size_mb_after": round(sum(files.values()), 3), "files": files, "words_kept": kept,
               "vocabulary": len(words) if tables else None, "tables": tables, "quantize": quantize,
               "int8_tag_agreement": agreement}
    log.info("export: %s (%.2f MB) -> %s (%.2f MB)", model_path, summary["size_mb_before"], out,
             summary["size_mb_after"])
    return summary
