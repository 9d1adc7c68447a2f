"""Models from configuration: ``{"type": "tagger", ...}`` builds a new model, ``teacher: {path: ...}`` loads one."""
from __future__ import annotations

import json
import pickle
import typing
import zipfile
from pathlib import Path
from typing import Any, Dict, Literal, Mapping, Optional, Union

from flair.data import Corpus, Dictionary

import copy

from ..models import BiaffineParser, BiaffineSpanTagger, DependencyTagger, DistillableTagger
from ..models.dependency_tagger import DEFAULT_TAG_TYPE, encode_corpus, make_tag_dictionary
from ..models.factorised_parser import FactorisedDependencyTagger
from ..models.span_crf import SpanCRFTagger
from ..registry import ConfigError, Registry
from ..types import Count, Dropout
from .embeddings import build_embeddings

__all__ = ["MODELS", "MODEL_CLASSES", "build_model", "load_model", "span_types_of"]

MODELS = Registry("model")


def span_types_of(model) -> Dictionary:
    """The entity types a BIO/BIOES tagger predicts, as a span-label dictionary (its tags' suffixes)."""
    types = Dictionary(add_unk=False)
    for tag in model.label_dictionary.get_items():
        if tag[:2] in ("B-", "I-", "E-", "S-"):
            types.add_item(tag[2:])
    types.span_labels = True
    return types


def _tag_dictionary(source: str, corpus: Corpus, tag_type: str, teacher) -> Dictionary:
    if source == "teacher":
        if teacher is None:
            raise ConfigError("model.tag_dictionary: 'teacher' needs a teacher")
        if isinstance(teacher, BiaffineSpanTagger):
            return copy.deepcopy(teacher.label_dictionary)  # already the entity types
        if getattr(teacher, "predict_spans", False):
            return span_types_of(teacher)
        items = [t for t in teacher.label_dictionary.get_items() if t not in ("<START>", "<STOP>")]
        d = Dictionary(add_unk="<unk>" in items)
        for item in items:
            if item != "<unk>":
                d.add_item(item)
        return d
    if source == "corpus":
        return corpus.make_label_dictionary(tag_type, add_unk=False)
    raise ConfigError(f"model.tag_dictionary must be 'corpus' or 'teacher', got {source!r}")


@MODELS.register("tagger")
def tagger(tag_type: str, embeddings, corpus: Corpus, teacher=None,
           tag_dictionary: Literal["corpus", "teacher"] = "corpus", use_crf: bool = True, hidden_size: Count = 256,
           rnn_layers: Count = 1, bidirectional: bool = True, rnn_type: Literal["LSTM", "GRU", "RNN"] = "LSTM",
           use_rnn: bool = True, tag_format: Literal["BIOES", "BIO"] = "BIOES", dropout: Dropout = 0.0,
           word_dropout: Dropout = 0.05, locked_dropout: Dropout = 0.5, reproject_embeddings: bool = True,
           kd_objective: Optional[Mapping[str, Any]] = None) -> DistillableTagger:
    """A BiLSTM(-CRF) `DistillableTagger`; its tags come from the corpus or (``tag_dictionary: teacher``, for
    students trained on unlabelled text) from the teacher."""
    return DistillableTagger(build_embeddings(embeddings, corpus), _tag_dictionary(tag_dictionary, corpus, tag_type,
                                                                                   teacher),
                             tag_type, use_crf=use_crf, hidden_size=hidden_size, rnn_layers=rnn_layers,
                             bidirectional=bidirectional, rnn_type=rnn_type, use_rnn=use_rnn, tag_format=tag_format,
                             dropout=dropout, word_dropout=word_dropout, locked_dropout=locked_dropout,
                             reproject_embeddings=reproject_embeddings, kd_objective=kd_objective)


@MODELS.register("span_ner")
def span_ner(tag_type: str, embeddings, corpus: Corpus, teacher=None, tag_dictionary: str = "corpus",
             max_width: Optional[int] = None, objective: str = "span", hidden_size: int = 200, rnn_layers: int = 1,
             mlp_size: int = 150, reproject_embeddings: bool = True, dropout: float = 0.0, word_dropout: float = 0.05,
             locked_dropout: float = 0.5, mlp_dropout: float = 0.2) -> BiaffineSpanTagger:
    """A biaffine span NER model (NER as parsing, Yu et al. 2020): the teacher of case 4."""
    return BiaffineSpanTagger(build_embeddings(embeddings, corpus),
                              _tag_dictionary(tag_dictionary, corpus, tag_type, teacher), tag_type,
                              max_width=max_width, objective=objective, hidden_size=hidden_size,
                              rnn_layers=rnn_layers, mlp_size=mlp_size, reproject_embeddings=reproject_embeddings,
                              dropout=dropout, word_dropout=word_dropout, locked_dropout=locked_dropout,
                              mlp_dropout=mlp_dropout)


@MODELS.register("span_crf")
def span_crf(tag_type: str, embeddings, corpus: Corpus, teacher=None, tag_dictionary: str = "corpus",
             max_width: int = 10, hidden_size: int = 200, rnn_layers: int = 1, mlp_size: int = 150,
             reproject_embeddings: bool = True, dropout: float = 0.0, word_dropout: float = 0.05,
             locked_dropout: float = 0.5, mlp_dropout: float = 0.2) -> SpanCRFTagger:
    """A span-CRF (semi-Markov) NER student: labelled segments with label transitions, taught exactly by a
    BIOES CRF tagger or a span_ner teacher.

    Args:
        max_width: widest entity segment in tokens (the cost grows with it); teacher mass on wider entities is lost
        mlp_size: width of the start and end MLPs
        mlp_dropout: dropout after the start and end MLPs
        rnn_layers: BiLSTM depth (0: no LSTM)
    """
    return SpanCRFTagger(build_embeddings(embeddings, corpus), _tag_dictionary(tag_dictionary, corpus, tag_type, teacher),
                         tag_type, max_width=max_width, hidden_size=hidden_size, rnn_layers=rnn_layers,
                         mlp_size=mlp_size, reproject_embeddings=reproject_embeddings, dropout=dropout,
                         word_dropout=word_dropout, locked_dropout=locked_dropout, mlp_dropout=mlp_dropout)


@MODELS.register("parser")
def parser(embeddings, corpus: Corpus, teacher=None, relation_type: str = "dependency", hidden_size: int = 400,
           lstm_layers: int = 3, arc_mlp: int = 500, rel_mlp: int = 100, dropout: float = 0.33, objective: str = "crf",
           projective: bool = False, second_order: bool = False, sibling_mlp: int = 100, inference: str = "exact",
           mfvi_iterations: int = 3, single_root: bool = True, root_relation: Optional[str] = "root",
           main_metric: str = "las") -> BiaffineParser:
    """A biaffine dependency parser (first or second order): the teacher of cases 1b and 2b."""
    relations = corpus.make_label_dictionary(relation_type, add_unk=True)
    return BiaffineParser(build_embeddings(embeddings, corpus), relations, relation_type=relation_type,
                          hidden_size=hidden_size, lstm_layers=lstm_layers, arc_mlp=arc_mlp, rel_mlp=rel_mlp,
                          dropout=dropout, objective=objective, projective=projective, second_order=second_order,
                          sibling_mlp=sibling_mlp, inference=inference, mfvi_iterations=mfvi_iterations,
                          single_root=single_root, root_relation=root_relation, main_metric=main_metric)


@MODELS.register("dependency_tagger")
def dependency_tagger(embeddings, corpus: Corpus, teacher=None, tag_type: str = DEFAULT_TAG_TYPE,
                      relation_type: str = "dependency", repair: str = "mst", root_relation: Optional[str] = "root",
                      main_metric: str = "las", hidden_size: int = 800, rnn_layers: int = 2, dropout: float = 0.0,
                      word_dropout: float = 0.05, locked_dropout: float = 0.5,
                      reproject_embeddings: bool = True, factorised: bool = False,
                      head_relations: bool = False, head_offsets: bool = False) -> DependencyTagger:
    """Dependency parsing as sequence labelling (tags ``"{h - i}_{rel}"``): the student of cases 1b and 2b.
    Every split of the corpus gets its offset tags; the dictionary is the training split's.

    Args:
        factorised: one softmax over head offsets and one over relations instead of one over every tag seen
            (`FactorisedDependencyTagger`; structural KD stays exact)
        head_relations: (factorised only) relations predicted from the word's and its head's states
        head_offsets: (with head_relations) offset logits add a part from the word at each offset
    """
    if (head_relations or head_offsets) and not factorised:
        raise ValueError("head_relations and head_offsets need factorised: true")
    encode_corpus(corpus, tag_type, relation_type)
    tags = make_tag_dictionary(corpus, tag_type, relation_type)
    cls = FactorisedDependencyTagger if factorised else DependencyTagger
    # FactorisedDependencyTagger refuses head_offsets without head_relations
    extra = {"head_relations": head_relations, "head_offsets": head_offsets} if factorised else {}
    return cls(build_embeddings(embeddings, corpus), tags, tag_type, **extra, repair=repair, relation_type=relation_type,
               root_relation=root_relation, main_metric=main_metric, hidden_size=hidden_size, rnn_layers=rnn_layers,
               dropout=dropout, word_dropout=word_dropout, locked_dropout=locked_dropout,
               reproject_embeddings=reproject_embeddings)


# model type name -> the class whose `load` reads its saved files (hub ids included), read from the type's factory's
# return annotation: the registry is the one list of model types
MODEL_CLASSES: Dict[str, type] = {name: typing.get_type_hints(MODELS.get(name))["return"] for name in MODELS.names()}


def build_model(spec: Mapping[str, Any], corpus: Corpus, teacher=None):
    return MODELS.build(spec, where="model", corpus=corpus, teacher=teacher)


def kept_model(folder: Path) -> Optional[Path]:
    """The model a run folder kept: the one its ``results.json`` names (the last weights by default, the best dev
    epoch's with ``use_final_model_for_eval: false``), else ``best-model.pt``, else ``final-model.pt``; None when it
    holds none of them."""
    try:
        named = folder / Path(json.loads((folder / "results.json").read_text())["model"]).name
    except (OSError, ValueError, KeyError, TypeError):
        named = None
    return next((name for name in (named, folder / "best-model.pt", folder / "final-model.pt")
                 if name is not None and name.is_file()), None)


def load_model(spec: Union[str, Mapping[str, Any]], where: str = "teacher"):
    """Load a saved model: ``{"path": <local file or hub id>, "type": "tagger"}`` or just the path string."""
    if isinstance(spec, (str, Path)):
        spec = {"path": str(spec)}
    if not isinstance(spec, Mapping) or "path" not in spec:
        raise ConfigError(f"{where}: expected a path or hub id, or a mapping with 'path' (and 'type'), got {spec!r}")
    unknown = set(spec) - {"path", "type"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: path, type")
    kind = spec.get("type", "tagger")
    if kind not in MODEL_CLASSES:
        raise ConfigError(f"{where}: unknown model type {kind!r}; known: {', '.join(sorted(MODEL_CLASSES))}")
    path = str(spec["path"])
    if Path(path).is_dir():
        kept = kept_model(Path(path))
        if kept is None:
            raise ConfigError(f"{where}: folder {path} holds no best-model.pt or final-model.pt")
        path = str(kept)
    if path.endswith(".pt") and not Path(path).exists():  # anything else may be a hub id
        raise ConfigError(f"{where}: model file {path} does not exist")
    try:
        return MODEL_CLASSES[kind].load(path)
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError,
            AttributeError, TypeError) as error:
        # Flair's files are pickles: a damaged or foreign file fails deep inside torch.load in many ways
        detail = " ".join(str(error).split())[:200]
        raise ConfigError(f"{where}: cannot load {path!r} as a {kind} model: not a complete Flair model file "
                          f"({type(error).__name__}: {detail})") from error
