"""Flair models that teach and learn by structural KD (importing this registers them with Flair's loaders)."""
from .char_embeddings import BatchedCharacterEmbeddings
from .dependency_tagger import DependencyTagger
from .factorised_parser import FactorisedDependencyTagger
from .fasttext import FastTextSubwordEmbeddings
from .parser import BiaffineParser
from .piece_table import PieceTableEmbeddings
from .span_crf import SpanCRFTagger
from .span_ner import BiaffineSpanTagger
from .tagger import KD_TARGETS, UNLABELLED, DistillableTagger, is_unlabelled

__all__ = ["BatchedCharacterEmbeddings", "BiaffineParser", "BiaffineSpanTagger", "DependencyTagger", "DistillableTagger",
           "FactorisedDependencyTagger", "FastTextSubwordEmbeddings", "KD_TARGETS", "PieceTableEmbeddings", "SpanCRFTagger", "UNLABELLED",
           "is_unlabelled"]
