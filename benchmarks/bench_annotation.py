"""Annotating raw text: peak memory against the number of sentences, disk per cached sentence, throughput.

    python -m benchmarks.bench_annotation [--sizes 5000 50000] [--length 14]

Each size runs in a fresh process: write N distinct sentences (CoNLL-2003's mean length by default) to a
plain text file (words of the bundled WikiANN slice), load it as a ``text`` corpus (the user's path), and
annotate it with a small BiLSTM-CRF teacher (one-hot embeddings) for a CRF student's structural targets,
cached and flushed in shards; the teacher is untrained (near uniform: every target kept, the upper bound) or
trained a few epochs on the bundled slice (confident, as real teachers are). The teacher is small on
purpose: what is measured is what the annotation pipeline itself holds, not the teacher's own cost. Peak RSS is the process's
maximum resident set (``ru_maxrss``); "growth" subtracts the resident set measured after imports.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUNDLED = Path(__file__).resolve().parents[1] / "resources" / "data" / "wikiann_en"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def one(n: int, length: int, shard_every: int, epochs: int, shared: str = None) -> dict:
    """One measurement; `shared`: a folder every process of a torch.distributed group uses for the cache (each
    builds the same teacher and text from the same seeds and annotates its share of the sentences)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import logging

    import flair
    import torch
    from flair.embeddings import OneHotEmbeddings
    from flair.trainers import ModelTrainer

    from skd_flair.models import DistillableTagger
    from skd_flair.training.annotate import annotate
    from skd_flair.training.corpora import load_corpus

    logging.getLogger("flair").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    flair.set_seed(0)
    base = _rss_mb()
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(shared or tmp) / "cache"
        labelled = load_corpus({"type": "column", "data_folder": str(BUNDLED), "column_format": {0: "text", 1: "ner"}})
        tags = labelled.make_label_dictionary("ner", add_unk=False)

        def tagger():
            return DistillableTagger(OneHotEmbeddings.from_corpus(labelled, embedding_length=32, min_freq=1), tags,
                                     "ner", use_crf=True, hidden_size=64)
        teacher, student = tagger(), tagger()
        if epochs:  # a trained teacher is confident, as real ones are: most of its marginals fall below threshold
            ModelTrainer(teacher, labelled).train(Path(tmp) / "teacher", max_epochs=epochs, learning_rate=0.1,
                                                  mini_batch_size=16, save_final_model=False, create_file_logs=False,
                                                  create_loss_file=False)
        real = [[t.text for t in s] for s in labelled.train]
        rng = random.Random(0)
        text = Path(tmp) / "raw.txt"
        with open(text, "w") as f:  # distinct sentences of the slice's words, with CoNLL-2003's mean length
            for i in range(n):
                words = [w for s in rng.sample(real, 3) for w in s]
                f.write(" ".join([str(i), *words[:max(1, int(rng.expovariate(1 / length)))]]) + "\n")
        corpus = load_corpus({"type": "text", "train_file": str(text)})
        loaded = _rss_mb()
        start = time.perf_counter()
        targets = annotate(teacher, corpus.train, student, {"type": "structural"}, cache_dir=cache,
                           progress=False, shard_every=shard_every)
        seconds = time.perf_counter() - start
        disk = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
        tokens = sum(len(s) for s in corpus.train)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        return {"sentences": n, "teacher_epochs": epochs, "processes": world, "rank": rank, "tokens": tokens,
                "entries": len(targets),
                "seconds": round(seconds, 1), "sentences_per_second": round(n / seconds, 1),
                "rss_after_imports_mb": round(base, 1), "rss_with_corpus_mb": round(loaded, 1),
                "peak_rss_mb": round(peak, 1), "peak_growth_mb": round(peak - base, 1), "cache_bytes": disk,
                "cache_bytes_per_sentence": round(disk / n, 1), "cache_bytes_per_token": round(disk / tokens, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    parser.add_argument("--length", type=int, default=14, help="mean sentence length in tokens")
    parser.add_argument("--shard-every", type=int, default=2000)
    parser.add_argument("--teacher-epochs", type=int, nargs="+", default=[0, 10],
                        help="0: an untrained, near-uniform teacher (every target kept, the upper bound)")
    parser.add_argument("--nproc", type=int, nargs="+", default=[1],
                        help="process counts to compare (torch.distributed, gloo; peak RSS is the first process's)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        nproc = args.nproc[0]
        if nproc == 1:
            print(json.dumps(one(args.one, args.length, args.shard_every, args.teacher_epochs[0])))
            return
        from skd_flair.training.distributed import launch

        with tempfile.TemporaryDirectory() as shared:
            print(json.dumps(launch(one, nproc, args.one, args.length, args.shard_every, args.teacher_epochs[0],
                                    shared)))
        return
    rows = []
    for epochs in args.teacher_epochs:
        for n in args.sizes:
            for nproc in args.nproc:
                out = subprocess.run([sys.executable, "-m", "benchmarks.bench_annotation", "--one", str(n),
                                      "--length", str(args.length), "--shard-every", str(args.shard_every),
                                      "--teacher-epochs", str(epochs), "--nproc", str(nproc)],
                                     check=True, capture_output=True, text=True).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    print(f"{'teacher epochs':>14s} {'sentences':>10s} {'processes':>9s} {'sent/s':>8s} {'peak RSS MB':>12s} "
          f"{'growth MB':>10s} {'cache B/sent':>13s}")
    for r in rows:
        print(f"{r['teacher_epochs']:14d} {r['sentences']:10d} {r.get('processes', 1):9d} "
              f"{r['sentences_per_second']:8.1f} {r['peak_rss_mb']:12.1f} {r['peak_growth_mb']:10.1f} "
              f"{r['cache_bytes_per_sentence']:13.1f}")


if __name__ == "__main__":
    main()
