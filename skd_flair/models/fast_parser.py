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
from .fast_tagger import fast_tagger

__all__ = ["fast_parse"]


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
