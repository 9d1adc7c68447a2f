"""The fast path for parsing students (``DependencyTagger``, factorised or not): the emissions from
``FastTagger``'s one graph over id tensors instead of Flair's token-by-token embedding, the trees from the model's
own decoder (``DependencyTagger._trees``: MST or Eisner), written as ``DependencyTagger.predict`` writes them
(``token.head_id`` and a relation label scored by its tag's probability).

    from skd_flair.models.fast_tagger import fast_predict
    fast_predict(parser_student, sentences)   # dispatches here for a DependencyTagger
"""
from __future__ import annotations

from typing import List, Optional, Union

from flair.data import Sentence

from .dependency_tagger import DependencyTagger
from .eval_loop import eval_mode
from .fast_tagger import UnsupportedTagger, fast_tagger

__all__ = ["fast_parse", "parser_config"]


def fast_parse(model: DependencyTagger, sentences: Union[List[Sentence], Sentence], mini_batch_size: int = 32,
               label_name: Optional[str] = None, repair: Optional[str] = None) -> None:
    """``model.predict(sentences, mini_batch_size, label_name=..., repair=...)`` through the fast path."""
    label_name = label_name or model.relation_type
    repair = repair or model.repair
    if isinstance(sentences, Sentence):
        sentences = [sentences]
    fast = fast_tagger(model, emissions_only=True)
    with eval_mode(model):
        ordered = sorted((s for s in sentences if len(s) > 0), key=len, reverse=True)
        for start in range(0, len(ordered), mini_batch_size):
            batch = ordered[start:start + mini_batch_size]
            tensors = fast.tensorize([[token.text for token in sentence.tokens] for sentence in batch])
            scores = model.chain_scores(fast.emissions(*tensors), tensors.lengths)
            model._write_trees(batch, model._trees(scores, repair, probabilities=True), label_name)


def parser_config(model: DependencyTagger) -> dict:
    """The ``"parser"`` section of an ONNX export's config: what ``skd_flair.parsing_runtime.OffsetTreeDecoder``
    needs to decode the graph's output columns into the trees `model` predicts (JSON-serialisable)."""
    from .factorised_parser import FactorisedDependencyTagger

    if model.repair not in ("mst", "eisner"):
        raise UnsupportedTagger(f"ONNX export: a parser is exported with its tree decoder, mst or eisner; this one "
                                f"decodes with {model.repair!r} (set model.repair = 'mst' before exporting)")
    codec = model.codec
    factorised = isinstance(model, FactorisedDependencyTagger)
    if factorised:
        relations = list(model.relations)
        tag_relations = model._tag_relation.tolist()
    else:
        relations = list(dict.fromkeys(r for r in codec.relations if r is not None))
        index = {r: k for k, r in enumerate(relations)}
        tag_relations = [index.get(r, -1) if r is not None else -1 for r in codec.relations]
    return {"factorised": factorised, "repair": model.repair, "root_relation": model.root_relation,
            "relations": relations, "tags": list(codec.tags), "tag_offsets": codec.offsets.tolist(),
            "tag_relations": tag_relations, "tag_usable": codec.usable.tolist(),
            "offsets": list(model.offsets) if factorised else None,
            "head_relations": bool(getattr(model, "head_relations", False)),
            "head_offsets": bool(getattr(model, "head_offsets", False)),
            "tag_offset_cols": model._tag_offset.tolist() if factorised else None}
