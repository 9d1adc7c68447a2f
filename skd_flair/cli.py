"""``skd-flair`` / ``python -m skd_flair``: train, distil, annotate, evaluate, predict, time, export, plot, demo."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import List, Optional

import yaml

from .logs import flair_logs_to_stderr
from .registry import ConfigError
from .structs import StructureInputError

log = logging.getLogger("skd_flair")


def _overwrite(parser: argparse.ArgumentParser):
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a run of another configuration in trainer.base_path (an unfinished run of "
                             "the same configuration always resumes)")


def _overrides(parser: argparse.ArgumentParser):
    parser.add_argument("-o", "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a configuration value, e.g. -o trainer.max_epochs=3 (repeatable)")


def _corpus_spec(args):
    from .training.pipeline import load_config

    if args.corpus:
        spec = yaml.safe_load(args.corpus) if not os.path.isfile(args.corpus) else yaml.safe_load(open(args.corpus))
        return spec
    if args.config:
        config = load_config(args.config)
        if "corpus" not in config:
            raise ConfigError(f"{args.config} has no corpus section")
        return config["corpus"]
    raise ConfigError("give --corpus (YAML/JSON text or file) or --config (a configuration with a corpus)")


def _nproc(parser: argparse.ArgumentParser, text: str):
    parser.add_argument("--nproc", type=int, default=None, metavar="N", help=text)


def _print(result):
    print(json.dumps(result, indent=2, default=str))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skd-flair", description="Structural knowledge distillation for Flair.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", aliases=["train-teacher"], help="train a model (a teacher, or a student without KD)")
    p.add_argument("config")
    _overwrite(p)
    _overrides(p)
    _nproc(p, "train data-parallel in N local processes (Flair's DistributedDataParallel; one GPU each on "
              "CUDA, gloo on CPU); under torchrun, leave it out")

    p = sub.add_parser("distill", help="distil a teacher into a student (annotates and caches teacher targets)")
    p.add_argument("config")
    _overwrite(p)
    _overrides(p)
    _nproc(p, "N local processes: each annotates a share of the sentences, then the student trains "
              "data-parallel (Flair's DistributedDataParallel; one GPU each on CUDA, gloo on CPU); under torchrun, "
              "leave it out")

    p = sub.add_parser("check", help="check a configuration's sections, types and keys without running anything")
    p.add_argument("config")
    _overrides(p)

    p = sub.add_parser("annotate", help="compute and cache the teacher targets of a distillation configuration")
    p.add_argument("config")
    _nproc(p, "annotate with N local processes (torch.distributed), each a disjoint share of the sentences")
    _overrides(p)

    for name, text in (("evaluate", "evaluate a saved model on a corpus split"),
                       ("speed", "what saved models cost to run on a corpus split: file size, load time, memory, "
                                 "sentences/s at each --batch-size (predict, and fast_predict for taggers), each "
                                 "model in a fresh process")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--model", required=True, action="append",
                       help="model file or hub id (repeatable for speed; an ONNX export folder too)")
        p.add_argument("--type", default="tagger", help="model type (tagger, parser, dependency_tagger, span_ner)")
        p.add_argument("--config", help="a configuration whose corpus section to use")
        p.add_argument("--corpus", help="a corpus spec as YAML/JSON text or file")
        p.add_argument("--split", default="test", choices=["train", "dev", "test"])
        if name == "speed":
            p.add_argument("--batch-size", type=int, action="append", help="repeatable (default: 1 and 32)")
            p.add_argument("--sentences", type=int, help="measure on the first N sentences of the split")
            p.add_argument("--no-fast", action="store_true", help="do not measure the fast path")
        else:
            p.add_argument("--batch-size", type=int, default=32)

    p = sub.add_parser("predict", help="tag the sentences of a file")
    p.add_argument("--model", required=True)
    p.add_argument("--type", default="tagger")
    p.add_argument("--input", required=True, help="one sentence a line, whitespace-tokenised (plain), or a column "
                                                  "file (column); one output block per non-blank sentence, in order")
    p.add_argument("--output", required=True)
    p.add_argument("--format", default="plain", choices=["plain", "column"], help="of the input file")
    p.add_argument("--output-format", default="auto", choices=["auto", "tsv", "conll", "jsonl", "conllu"],
                   help="tsv: token TAB tag; conll: token TAB tag TAB score; jsonl: one JSON object a sentence "
                        "(tokens, tags, scores, spans); conllu: parsers' heads and relations; auto: conllu for "
                        "parsers, else tsv")
    p.add_argument("--encoding", default="utf-8", help="of the input file (a byte-order mark is dropped)")
    p.add_argument("--batch-size", type=int, default=32)

    p = sub.add_parser("export", help="a smaller copy of a tagger for shipping: word tables trimmed to a "
                                      "vocabulary, optionally int8 LSTM/Linear layers and/or fp16 weights")
    p.add_argument("model", help="a saved tagger (.pt)")
    p.add_argument("out", help="the file to write (atomically); the folder to write for --format onnx")
    p.add_argument("--vocab", metavar="FILE", help="keep the words of this UTF-8 file, one a line")
    p.add_argument("--corpus", metavar="CONFIG", help="keep the tokens of this configuration's corpus (all splits) "
                                                       "and unlabelled text")
    p.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantisation of the LSTM and Linear layers "
                                                        "and the word tables (CPU inference; with --format onnx "
                                                        "onnxruntime's quantiser)")
    p.add_argument("--half", action="store_true", help="store float weights as fp16 (float32 again after loading)")
    p.add_argument("--format", default="flair", choices=["flair", "onnx"],
                   help="flair: a Flair model file (default); onnx: a folder with model.onnx and tagger.json for "
                        "`python -m skd_flair.onnx_runner` (numpy + onnxruntime; needs the [export] extra; "
                        "taggers and parsing students)")

    p = sub.add_parser("plot", help="draw a run's loss.tsv (train loss, dev score) and kd_loss.tsv (KD "
                                    "diagnostics) as one PNG")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (trainer.base_path)")
    p.add_argument("-o", "--output", metavar="OUT.png", help="the image to write (default RUN_DIR/training.png)")

    p = sub.add_parser("demo", help="the main job on the bundled data: teacher, student without and with KD")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--fresh", action="store_true", help="retrain everything instead of reusing finished steps")
    return parser


def run(args) -> Optional[dict]:
    from .training import pipeline

    if args.command in ("train", "train-teacher"):
        return pipeline.train_model(pipeline.load_config(args.config, args.overrides), overwrite=args.overwrite,
                                    nproc=args.nproc)
    if args.command == "distill":
        return pipeline.distill(pipeline.load_config(args.config, args.overrides), overwrite=args.overwrite,
                                nproc=args.nproc)
    if args.command == "check":
        pipeline.check_config(pipeline.load_config(args.config, args.overrides))
        return {"config": args.config, "valid": True}
    if args.command == "annotate":
        config = pipeline.load_config(args.config, args.overrides)
        if args.nproc is not None and args.nproc < 1:
            raise ConfigError(f"annotate: --nproc must be >= 1, got {args.nproc}")
        if args.nproc is not None and args.nproc > 1:
            from .training.distributed import launch

            return launch(pipeline.annotate_only, args.nproc, pipeline.check_config(config))
        return pipeline.annotate_only(config)
    if args.command == "evaluate":
        return pipeline.evaluate_model({"path": args.model[0], "type": args.type}, _corpus_spec(args), args.split,
                                       batch_size=args.batch_size)
    if args.command == "speed":
        from .training.corpora import load_corpus
        from .training.speed import speed_report

        corpus = load_corpus(_corpus_spec(args))
        split = getattr(corpus, args.split)
        if split is None or len(split) == 0:
            raise ConfigError(f"speed: the corpus has no {args.split} sentences")
        data = list(split)[:args.sentences] if args.sentences else list(split)
        return speed_report(args.model, data, batch_sizes=args.batch_size or (1, 32), kind=args.type,
                            fast=not args.no_fast)
    if args.command == "predict":
        n = pipeline.predict_file({"path": args.model, "type": args.type}, args.input, args.output, args.format,
                                  args.batch_size, encoding=args.encoding, output_format=args.output_format)
        return {"sentences": n, "output": args.output}
    if args.command == "export":
        from .training.export import export_model

        return export_model(args.model, args.out, vocab=args.vocab, corpus=args.corpus, quantize=args.quantize,
                            half=args.half, format=args.format)
    if args.command == "plot":
        from .training.plot import plot_run

        return plot_run(args.run_dir, args.output)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.out, fresh=args.fresh)
    raise AssertionError(args.command)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s")
    main_process = True
    try:
        if args.command in ("train", "train-teacher", "distill", "annotate"):
            from .training.distributed import is_main_process, join_from_environment

            if join_from_environment() and args.nproc is not None:  # torchrun started the processes already
                raise ConfigError("--nproc launches processes; under torchrun give --nproc-per-node to torchrun")
            main_process = is_main_process()
        if args.command == "plot":  # needs no Flair
            result = run(args)
        else:
            with flair_logs_to_stderr():  # stdout carries only the command's JSON: `> out.json` parses
                result = run(args)
    except (ConfigError, StructureInputError) as error:  # bad configuration, data or label sets: one line
        print(f"skd-flair: error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"skd-flair: error: {error}", file=sys.stderr)
        return 2
    if not main_process:  # under torchrun every process returns; the first one prints
        return 0
    if args.command == "export":  # one line, for scripts
        print(json.dumps(result, default=str))
    elif result is not None and args.command != "demo":
        _print({k: v for k, v in result.items() if k != "config" or args.command == "check"}
               if isinstance(result, dict) else result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
