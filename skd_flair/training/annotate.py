"""Running a teacher once over a corpus and keeping its targets for a student.

The teacher runs in eval mode without an autograd graph, its marginals are taken in float64 by the KD
objective and mapped onto the student's substructures, and the result is cached on disk (see `cache`).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import flair
import torch
from flair.data import Sentence
from tqdm import tqdm

from ..distill import KDObjective, OBJECTIVES
from ..distill.batching import split_targets
from ..distill.factorisations import Factorisation, factorisation
from ..distill.labels import SPECIAL_LABELS, LabelMismatchError
from ..models.eval_loop import eval_mode
from ..models.tagger import DistillableTagger
from ..registry import ConfigError
from . import cache_dir
from .cache import (MergedEntries, TargetCache, compress, corpus_digest, decompress, digest, fingerprint_model,
                    sentence_key)
from .distributed import is_distributed

log = logging.getLogger("skd_flair")

__all__ = ["TeacherTargets", "annotate", "default_cache_dir"]


def default_cache_dir() -> Path:
    return cache_dir("targets")


class TeacherTargets:
    """A teacher's targets for a set of sentences, in one student's label space, looked up by sentence."""

    def __init__(self, entries: Mapping[str, dict], labels: Sequence[str], student: str, objective: dict,
                 key: str = "", stats: Optional[dict] = None, path: Optional[Path] = None):
        self.entries = entries
        self.labels = list(labels)
        self.student = factorisation(student).name  # the student factorisation the targets were made for
        self.objective = objective
        self.key = key
        self.stats = stats or {}
        self.path = path  # the cache file (None without a cache)

    def __len__(self):
        return len(self.entries)

    def __contains__(self, sentence) -> bool:
        return sentence_key(sentence) in self.entries

    def piece(self, sentence: Sentence) -> dict:
        """The sentence's targets, decompressed (see distill.batching for the layout)."""
        key = sentence_key(sentence)
        if key not in self.entries:
            raise KeyError(f"no teacher targets for sentence {sentence.to_tokenized_string()[:80]!r}: annotate every "
                           "training sentence (including unlabelled ones) with the same teacher before training")
        return decompress(self.entries[key])

    def build_objective(self) -> KDObjective:
        return OBJECTIVES.build(self.objective, where="teacher targets")


def _student_space(student):
    labels = getattr(student, "label_names", None)
    if labels is None:
        labels = student.label_dictionary.get_items()
    if not hasattr(student, "factorisation"):
        raise TypeError(f"{type(student).__name__} cannot learn from a teacher; use a skd_flair student model")
    return list(labels), student.factorisation


def _check_label_coverage(teacher, student, labels: List[str], sentences: List[Sentence], allow: bool):
    """Between two taggers (span teachers check their types in ``distill.span_scores``)."""
    if not (isinstance(teacher, DistillableTagger) and isinstance(student, DistillableTagger)):
        return
    taught = set(teacher.label_names) - set(SPECIAL_LABELS)
    missing = [name for name in labels if name not in taught and name not in SPECIAL_LABELS]
    if not missing:
        return
    types = {name.split("-", 1)[-1] for name in missing}
    tokens = sum(len(span) for s in sentences for span in s.get_spans(student.label_type) if span.tag in types)
    message = (f"the student has tags its teacher never predicts: {missing}; the teacher would teach that they "
               f"never occur ({tokens} gold training tokens carry them)")
    if not allow:
        raise LabelMismatchError(f"{message}. Use a teacher trained on the same label set, or set "
                          "kd.allow_missing_labels: true")
    log.warning(message)


def _run_teacher(teacher, sentences, todo: List[int], objective: KDObjective, labels, student: Factorisation,
                 batch_size: int, threshold: float, clear_embeddings: bool, cache: Optional[TargetCache], rank: int,
                 shard_every: int, progress: bool) -> Tuple[Dict[str, dict], float]:
    """The teacher's compressed targets of the sentences at the indices `todo` by sentence key, flushed to `cache` as shards every
    `shard_every` sentences (the unflushed rest is returned), and the largest probability mass Top-K dropped."""
    pending: Dict[str, dict] = {}  # only the pieces since the last flushed shard are held in memory
    dropped = 0.0
    bar = tqdm(total=len(todo), desc="teacher targets", unit="sent", disable=not progress or not todo,
               mininterval=5.0)
    with eval_mode(teacher), bar:
        for i in range(0, len(todo), batch_size):
            batch = [sentences[k] for k in todo[i:i + batch_size]]
            if clear_embeddings:
                for s in batch:
                    s.clear_embeddings()  # never let a student's cached embeddings reach the teacher
            targets = objective.targets(teacher.teacher_scores(batch), labels, student)
            for s, piece in zip(batch, split_targets(targets)):
                pending[sentence_key(s)] = compress(piece, threshold)
                if clear_embeddings:
                    s.clear_embeddings()  # ... nor the teacher's reach the student
            if getattr(targets, "dropped_mass", None) is not None:
                dropped = max(dropped, float(targets.dropped_mass.max()))
            bar.update(len(batch))
            if cache is not None and len(pending) >= shard_every:
                cache.save_shard(pending, rank)
                pending = {}
    return pending, dropped


def annotate(teacher, sentences: Iterable[Sentence], student, objective: Union[KDObjective, dict, str] = "structural",
             cache_dir: Union[str, Path, None] = None, batch_size: int = 32, threshold: float = 1e-7,
             progress: bool = True, shard_every: int = 2000, clear_embeddings: bool = True,
             allow_missing_labels: bool = False) -> TeacherTargets:
    """Targets of `teacher` for every sentence, in `student`'s substructure space.

    Args:
        teacher: a model with ``teacher_scores(sentences)`` (a `DistillableTagger`, a parser, a span model).
        sentences: the student's training sentences, labelled and unlabelled.
        student: the student model (its label dictionary and whether it is a CRF decide the targets).
        objective: a KD objective or its config; its temperature and map are part of the targets.
        cache_dir: where targets are cached (None: ``$SKD_FLAIR_CACHE/targets``, by default under
            ``~/.cache/skd_flair``); ``False`` disables caching. Targets are content-addressed: a sentence
            annotated before by the same teacher with the same objective and student labels (in any corpus) is
            reused, not annotated again; ``stats["reused"]`` counts them.
        threshold: probabilities below this are not stored (see `cache`).
        shard_every: sentences between flushes of partial results (an interrupted run resumes from them).
        clear_embeddings: drop every embedding from the sentences before and after the teacher sees them, so
            none leaks between teacher and student. Pass False only to annotate several objectives in a row
            with the teacher's embeddings kept (the DistillationPlugin clears them before the student trains).
        allow_missing_labels: a tagger student with tags its tagger teacher never predicts (``B-MISC`` when the
            teacher has no MISC) would be taught that they never occur; that is an error unless this is True,
            and then the number of gold tokens concerned is logged.

    Targets are computed per sentence, but the teacher runs on padded batches: they depend on the batch
    composition only through float32 rounding (below 1e-5; 2.5e-6 was measured between batch sizes 16 and 32).
    """
    if not isinstance(objective, KDObjective):
        objective = OBJECTIVES.build(objective, where="objective")
    if not hasattr(teacher, "teacher_scores"):
        raise ConfigError(f"{type(teacher).__name__} cannot teach: it has no teacher_scores(sentences) method")
    # a list, or a dataset that reads its sentences per access (``text`` with ``in_memory: false``): both are
    # read by index, so a lazy one is never held whole; each sentence is read once here and once more to annotate
    if not (hasattr(sentences, "__getitem__") and hasattr(sentences, "__len__")):
        sentences = list(sentences)
    keys, lengths = [], []
    for i in range(len(sentences)):
        sentence = sentences[i]
        keys.append(sentence_key(sentence))
        lengths.append(len(sentence))
    empty = [i for i, n in enumerate(lengths) if n == 0]
    if empty:
        raise ValueError(f"cannot annotate empty sentences (positions {empty[:10]})")
    labels, factorised_as = _student_space(student)
    _check_label_coverage(teacher, student, labels, sentences, allow_missing_labels)
    repeated = len(keys) - len(set(keys))
    if repeated:  # said on every run, cache hit or not: the counts in the results are of distinct sentences
        log.info(f"teacher targets: {repeated} of {len(keys)} sentences repeat an earlier one (same tokens) and are "
                 f"merged: each of the {len(keys) - repeated} distinct sentences is annotated once and every "
                 "occurrence gets its targets")
    config = objective.config()
    # the target space: what a sentence's targets depend on besides its tokens; a file holds one corpus of it
    space = digest("skd-targets", fingerprint_model(teacher), config, labels,
                   factorised_as.cache_key, threshold)
    key = digest(space, corpus_digest(keys))
    cache = (TargetCache(Path(cache_dir or default_cache_dir()) / space[:32], key) if cache_dir is not False
             else None)
    # under torch.distributed each rank annotates the sentences whose hash falls to it and flushes them as its
    # own shards; rank 0 merges every shard into the one file all ranks then read
    distributed = is_distributed() and cache is not None
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else (0, 1)
    if cache is not None:
        stored = cache.load()  # written only after every rank has passed this point, so all ranks agree
        if stored is not None:
            log.info(f"teacher targets: cache hit {cache.path} ({len(stored['entries'])} sentences)")
            # the stats are those of the run that wrote the file, marked as read from it
            return TeacherTargets(stored["entries"], labels, factorised_as.name, config, key,
                                  {**(stored.get("stats") or {}), "cache_hit": True}, cache.path)
    partial = cache.load_partial() if cache is not None else MergedEntries()
    if len(partial):
        log.info(f"teacher targets: resuming, {len(partial)} sentences already annotated")
    wanted = set(keys) - set(partial)
    reused = cache.reuse(wanted) if cache is not None and wanted else {}
    if reused:
        log.info(f"teacher targets: {len(reused)} of {len(set(keys))} sentences reused from earlier annotations "
                 f"with this teacher and objective; {len(wanted) - len(reused)} to annotate")
    done = MergedEntries([partial, reused])
    todo, seen = [], set(done)  # indices of the sentences to annotate
    for i, k in enumerate(keys):
        if k not in seen:
            seen.add(k)
            if int(k[:8], 16) % world == rank:
                todo.append(i)
    todo.sort(key=lambda i: -lengths[i])  # similar lengths batch together; results do not depend on it
    start = time.time()
    pending, dropped = _run_teacher(teacher, sentences, todo, objective, labels, factorised_as, batch_size, threshold,
                                    clear_embeddings, cache, rank, shard_every, progress)
    elapsed = time.time() - start
    annotated = len(todo)
    if todo:
        log.info(f"teacher targets: {len(todo)} sentences in {elapsed:.1f}s ({len(todo) / max(elapsed, 1e-9):.1f} "
                 f"sentences/s)" + (f" in rank {rank} of {world}" if distributed else ""))
    if distributed:
        cache.save_shard(pending, rank)
        pending = {}
        totals = torch.tensor([float(annotated), elapsed, dropped], dtype=torch.float64)
        torch.distributed.all_reduce(totals[:1])
        torch.distributed.all_reduce(totals[1:], op=torch.distributed.ReduceOp.MAX)
        annotated, elapsed, dropped = int(totals[0]), float(totals[1]), float(totals[2])
        torch.distributed.barrier()  # every rank's shards are on disk
    stats = {"sentences": annotated, "reused": len(reused), "resumed": len(partial), "seconds": elapsed,
             "max_dropped_mass": dropped, "device": str(flair.device), "processes": world}
    if cache is not None:
        if rank == 0:
            cache.save({"entries": MergedEntries([*cache.load_partial().parts, reused, pending]), "labels": labels,
                        "objective": config, "stats": stats})
        pending = {}
        if distributed:
            torch.distributed.barrier()  # the merged file is written
        entries = cache.load()["entries"]  # the packed file: compact, whatever was held before
    else:
        entries = pending
    return TeacherTargets(entries, labels, factorised_as.name, config, key, stats, cache.path if cache else None)
