"""Flair models that teach and learn by structural KD (importing this registers them with Flair's loaders)."""
from .fasttext import FastTextSubwordEmbeddings
from .span_ner import BiaffineSpanTagger
from .tagger import KD_TARGETS, UNLABELLED, DistillableTagger, is_unlabelled

__all__ = ["BiaffineSpanTagger", "DistillableTagger", "FastTextSubwordEmbeddings", "KD_TARGETS", "UNLABELLED",
           "is_unlabelled"]
