"""Training throughput of the parsing students with and without length-bucketed batches.

    python -m benchmarks.bench_length_buckets [--epochs 1] [--repeats 2]

On the bundled UD English-EWT slice, the parsing-as-tagging students of the ``parsing_1o`` suite (over 100-d
one-hot words; characters left out so that the LSTM, not the character model, is timed) are trained for `epochs`
epochs with Flair's shuffled batches and with ``trainer.length_buckets: true``: the plain student (one softmax over
offset tags, BiLSTM 2 x 400), the factorised one (offset x relation, 2 x 400) and the light one (factorised,
1 x 256), alternating the two batch orders `repeats` times on one thread (dev and test are cut to two sentences, so the time is training's).
Reports training sentences/s, the share of padded positions in the batches, and the ratio against shuffled
batches in the same run. The taggers pack their batches before the LSTM, so padding costs the LSTM nothing
there; what bucketing can save is the padded work around it (embeddings, output layer, loss). Writes ``benchmarks/results/length_buckets.json``.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.harness import parse_options

OUT = Path(__file__).resolve().parent / "results" / "length_buckets.json"
SLICE = Path(__file__).resolve().parents[1] / "resources" / "data" / "ud_en_ewt"


# name -> (factorised, hidden size, BiLSTM layers)
STUDENTS = {"offset tags": (False, 400, 2), "factorised": (True, 400, 2), "light": (True, 256, 1)}


def _student(corpus, factorised: bool, hidden: int, layers: int):
    from skd_flair.training.models import build_model

    return build_model({"type": "dependency_tagger", "factorised": factorised, "hidden_size": hidden,
                        "rnn_layers": layers, "embeddings": [{"type": "onehot", "embedding_length": 100,
                                                              "min_freq": 1}]}, corpus)


def _padding(lengths, batch_size, sampler=None):
    from skd_flair.training.length_buckets import padding_fraction

    if sampler is None:
        order = torch.randperm(len(lengths)).tolist()
        batches = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    else:
        batches = sampler.batches()
    return padding_fraction(lengths, batches)


def main(argv=None) -> dict:
    args = parse_options(__doc__, argv, {"epochs": (1, None), "repeats": (2, None), "batch_size": (32, None)})
    logging.getLogger("flair").setLevel(logging.WARNING)
    import flair

    from skd_flair.training.corpora import load_corpus
    from skd_flair.training.length_buckets import LengthBucketSampler
    from skd_flair.training.pipeline import run_trainer

    corpus = load_corpus({"type": "ud", "data_folder": str(SLICE), "sample_dev": 2, "sample_test": 2})
    lengths = [len(s) for s in corpus.train]
    sampler = LengthBucketSampler(args.batch_size)
    sampler.set_dataset(corpus.train)
    flair.set_seed(1)
    rows = {"sentences": len(lengths), "mean_length": sum(lengths) / len(lengths), "batch_size": args.batch_size,
            "padding_shuffled": _padding(lengths, args.batch_size), "padding_buckets": _padding(lengths, args.batch_size,
                                                                                                 sampler),
            "students": {}}
    for name, shape in STUDENTS.items():
        times = {False: [], True: []}
        for _ in range(args.repeats):
            for buckets in (False, True):
                flair.set_seed(1)
                model = _student(corpus, *shape)
                with tempfile.TemporaryDirectory() as folder:
                    start = time.perf_counter()
                    run_trainer(model, corpus, {"base_path": folder, "max_epochs": args.epochs,
                                                "mini_batch_size": args.batch_size, "length_buckets": buckets,
                                                "save_final_model": False}, plugins=[])
                    times[buckets].append(time.perf_counter() - start)
        # the fastest of the repeats: the least disturbed by other processes
        speed = {b: args.epochs * len(lengths) / min(t) for b, t in times.items()}
        rows["students"][name] = {"hidden_size": shape[1], "rnn_layers": shape[2],
                                  "sentences_per_second_shuffled": speed[False],
                                  "sentences_per_second_buckets": speed[True], "speedup": speed[True] / speed[False],
                                  "output_columns": len(model.label_names)}
        print(f"{name:12s} shuffled {speed[False]:6.1f} sent/s  buckets {speed[True]:6.1f} sent/s  "
              f"x{speed[True] / speed[False]:.2f}  ({len(model.label_names)} output columns)", flush=True)
    print(f"padded positions: shuffled {rows['padding_shuffled']:.1%}, buckets {rows['padding_buckets']:.1%}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
