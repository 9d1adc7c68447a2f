"""Memory of unlabelled text held as Flair sentences against read from disk per access.

    python -m benchmarks.bench_lazy_text [--sentences 5000 50000]

Writes a plain-text file of N distinct synthetic sentences (12-30 tokens), then, in a fresh process per (size,
reader), loads it as the ``text`` corpus type does (``in_memory: true`` / ``false``) and reads every sentence
once, as an epoch of training does. Reports the resident memory the corpus adds (VmRSS after loading over the
process's baseline; VmHWM over baseline after the epoch) and the time per 1,000 sentences read. Then, in a
fresh process per size, `annotate` with a small random BiLSTM-CRF teacher (one-hot words) for a MaxEnt student
over the lazily read text, into a fresh cache: peak memory over baseline, the cache file's bytes per sentence
and sentences/s, once with the finished targets loaded as the default does (in memory below 256 MB) and once
read per piece (what a cache over ``SKD_FLAIR_LAZY_TARGETS_MB`` gets). Writes ``benchmarks/results/lazy_text.json``.
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from benchmarks.harness import _status_kib, in_fresh_process

OUT = Path(__file__).resolve().parent / "results" / "lazy_text.json"
WORDS = ("the a of to in and is was for on with as by at from that it he she they said new year city team game "
         "government Berlin Paris Anna Bob Acme company market people first last two three").split()


def _status(field: str) -> float:
    return _status_kib(field) / 1024.0


def _measure(path: str, in_memory: bool, queue):
    from skd_flair.training.corpora import load_corpus

    base = _status("VmRSS")
    start = time.perf_counter()
    corpus = load_corpus({"type": "text", "train_file": path, "in_memory": in_memory})
    loaded = time.perf_counter() - start
    after_load = _status("VmRSS") - base
    start = time.perf_counter()
    tokens = sum(len(s) for s in corpus.train)
    epoch = time.perf_counter() - start
    queue.put({"in_memory": in_memory, "sentences": len(corpus.train), "tokens": tokens, "load_seconds": loaded,
               "rss_after_load_mb": after_load, "peak_over_baseline_mb": _status("VmHWM") - base,
               "ms_per_1000_read": 1000 * epoch / len(corpus.train) * 1000})


def _annotate(path: str, lazy_targets: bool, queue):
    import torch
    from flair.data import Corpus, Sentence
    from flair.datasets import FlairDatapointDataset
    from flair.embeddings import OneHotEmbeddings

    from skd_flair.models import DistillableTagger
    from skd_flair.training import cache as target_cache
    from skd_flair.training.annotate import annotate
    from skd_flair.training.corpora import load_corpus

    if lazy_targets:  # the finished targets read per piece, as files over SKD_FLAIR_LAZY_TARGETS_MB are
        target_cache.LAZY_BYTES = 0
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vocab = [Sentence(WORDS[k:k + 8]) for k in range(0, len(WORDS), 8)]
    for s in vocab:
        s[0:1].add_label("ner", "PER")
        s[2:4].add_label("ner", "LOC")
    small = Corpus(FlairDatapointDataset(vocab), FlairDatapointDataset(vocab), FlairDatapointDataset(vocab))
    tags = small.make_label_dictionary("ner", add_unk=False)

    def tagger(crf):
        emb = OneHotEmbeddings.from_corpus(small, embedding_length=32, min_freq=1)
        return DistillableTagger(emb, tags, "ner", use_crf=crf, hidden_size=32)

    teacher, student = tagger(True), tagger(False)
    base = _status("VmRSS")
    corpus = load_corpus({"type": "text", "train_file": path, "in_memory": False})
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        targets = annotate(teacher, corpus.train, student, "structural", cache_dir=cache, progress=False)
        seconds = time.perf_counter() - start
        size = Path(targets.path).stat().st_size
    queue.put({"sentences": len(corpus.train), "peak_over_baseline_mb": _status("VmHWM") - base,
               "cache_bytes_per_sentence": size / len(corpus.train), "sentences_per_second": len(corpus.train) / seconds})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, nargs="+", default=[5000, 50000])
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sentences:
            rng = random.Random(n)
            path = Path(folder) / f"text_{n}.txt"
            path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30))) + f" {i}"
                                      for i in range(n)) + "\n")
            for in_memory in (True, False):
                row = in_fresh_process(_measure, str(path), in_memory)
                rows.append(row)
                print(f"{n:>7,} sentences  {'in memory' if in_memory else 'lazy     '}  "
                      f"+{row['rss_after_load_mb']:7.1f} MB after load, peak +{row['peak_over_baseline_mb']:7.1f} MB, "
                      f"load {row['load_seconds']:5.2f} s, {row['ms_per_1000_read']:6.1f} ms per 1,000 read", flush=True)
            for lazy_targets in (False, True):
                name = "annotate_lazy_targets" if lazy_targets else "annotate"
                row = {name: in_fresh_process(_annotate, str(path), lazy_targets)}
                rows.append(row)
                a = row[name]
                print(f"{n:>7,} sentences  annotate (lazy text, MaxEnt targets, targets read "
                      f"{'per piece' if lazy_targets else 'as the default does'}): peak "
                      f"+{a['peak_over_baseline_mb']:7.1f} MB, {a['cache_bytes_per_sentence']:.0f} cached bytes a "
                      f"sentence, {a['sentences_per_second']:.0f} sentences/s", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
