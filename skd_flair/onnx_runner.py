"""Tag or parse text with a student exported by ``skd-flair export MODEL FOLDER --format onnx``: numpy and
onnxruntime only.

The folder holds ``model.onnx`` (the student's graph from token ids to emission scores) and ``tagger.json``
(labels, CRF transitions, the word tables' words, the character dictionary; for a parsing student also its
offset tags and tree decoder). This module turns whitespace-tokenised text into ids by Flair's rules, runs the
graph and decodes: a tagger by CRF Viterbi with marginal scores, or softmax and argmax, into spans as Flair forms
them (``skd_flair.tagging_runtime``); a parsing student into trees by MST or Eisner as ``DependencyTagger``
decodes (``skd_flair.parsing_runtime``). It imports neither torch nor flair.

    python -m skd_flair.onnx_runner FOLDER < text.txt     # one JSON line per input line

    from skd_flair.onnx_runner import load
    load("export/").predict([["Anna", "went", "to", "Berlin"]])   # OnnxTagger or OnnxParser
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .parsing_runtime import OffsetTreeDecoder
from .tagging_runtime import Encoder, crf_marginals, softmax, spans_from_bio, viterbi

__all__ = ["CONFIG_FILE", "MODEL_FILE", "OnnxParser", "OnnxTagger", "load", "main"]

FORMAT = "skd-flair-onnx-tagger"  # skd_flair.models.fast_tagger.ONNX_FORMAT
VERSION = 1
MODEL_FILE = "model.onnx"
CONFIG_FILE = "tagger.json"


class _OnnxGraph:
    """An exported student's graph, its config and its token encoder."""

    def __init__(self, folder: Union[str, os.PathLike], threads: int = 1):
        import onnxruntime as ort

        folder = Path(folder)
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        if config.get("format") != FORMAT or config.get("version") != VERSION:
            raise ValueError(f"{folder / CONFIG_FILE} is not a {FORMAT} v{VERSION} file")
        self.config = config
        self.labels: List[str] = config["labels"]
        self.tag_type: str = config["tag_type"]
        self.inputs: List[str] = config["inputs"]
        chars = config["chars"]
        self.encoder = Encoder([{word: i for i, word in enumerate(words)} for words in config["word_tables"]],
                               char_index=None if chars is None else chars["index"],
                               char_unk=None if chars is None else chars["unk"],
                               flair_char_order=chars is None or chars.get("flair_order", True))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])

    def emissions(self, sentences: Sequence[Sequence[str]]) -> np.ndarray:
        """``[B, N, K]`` emission scores of non-empty token lists."""
        enc = self.encoder.encode(sentences)
        batch, longest = len(enc.lengths), enc.longest
        feeds: Dict[str, np.ndarray] = {"lengths": np.asarray(enc.lengths, dtype=np.int64)}
        if "word_ids" in self.inputs:
            feeds["word_ids"] = np.asarray(enc.word_ids, dtype=np.int64).reshape(batch, longest, -1)
        if "char_ids" in self.inputs:
            feeds["char_ids"] = np.asarray(enc.char_ids, dtype=np.int64).reshape(enc.char_shape)
            feeds["char_index"] = np.asarray(enc.char_index, dtype=np.int64).reshape(batch, longest)
        return self.session.run(None, feeds)[0]

    def _batches(self, sentences: Sequence[Sequence[str]], batch_size: int):
        """(positions, token lists) of the non-empty inputs, longest first as Flair's predict batches."""
        order = sorted((i for i, words in enumerate(sentences) if len(words)), key=lambda i: len(sentences[i]),
                       reverse=True)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            yield chunk, [sentences[i] for i in chunk]


class OnnxTagger(_OnnxGraph):
    """An exported tagger (a folder written by ``skd-flair export --format onnx``)."""

    def __init__(self, folder: Union[str, os.PathLike], threads: int = 1):
        super().__init__(folder, threads)
        if self.config.get("parser") is not None:
            raise ValueError(f"{folder} holds a parser; open it with OnnxParser (or skd_flair.onnx_runner.load)")
        self.predict_spans: bool = self.config["predict_spans"]
        crf = self.config["crf"]
        self.crf = None if crf is None else tuple(np.asarray(crf[key], dtype=np.float32)
                                                  for key in ("transitions", "start", "end"))

    def decode(self, emissions: np.ndarray, lengths: Sequence[int]):
        """Best tags ``[B, N]`` (-1 on padding) and per-token probabilities ``[B, N, K]``."""
        lengths = np.asarray(lengths)
        if self.crf is not None:
            return viterbi(emissions, lengths, *self.crf), crf_marginals(emissions, lengths, *self.crf)
        probs = softmax(emissions)
        tags = probs.argmax(-1)
        tags[np.arange(tags.shape[1])[None, :] >= lengths[:, None]] = -1
        return tags, probs

    def predict(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> List[dict]:
        """Per token list: ``tokens``, ``tags``, ``scores`` (probability of each token's tag) and ``spans``
        (``start``, ``end`` exclusive, ``type``, ``score``; as Flair's span labels) for a span tagger."""
        out: List[Optional[dict]] = [None] * len(sentences)
        for chunk, batch in self._batches(sentences, batch_size):
            lengths = [len(words) for words in batch]
            tags, probs = self.decode(self.emissions(batch), lengths)
            scores = np.take_along_axis(probs, np.maximum(tags, 0)[..., None], -1)[..., 0]
            for b, i in enumerate(chunk):
                n = lengths[b]
                names = [self.labels[t] for t in tags[b, :n].tolist()]
                token_scores = scores[b, :n].tolist()
                out[i] = {"tokens": list(batch[b]), "tags": names, "scores": token_scores,
                          "spans": self._spans(names, token_scores)}
        return [result if result is not None else {"tokens": [], "tags": [], "scores": [], "spans": []}
                for result in out]

    def _spans(self, tags: List[str], scores: List[float]) -> List[dict]:
        if not self.predict_spans:
            return []
        return [{"start": idx[0], "end": idx[-1] + 1, "type": value, "score": score}
                for idx, score, value in spans_from_bio(tags, scores)]


class OnnxParser(_OnnxGraph):
    """An exported parsing student: heads and relations, decoded as ``DependencyTagger.predict`` decodes them
    (``skd_flair.parsing_runtime.OffsetTreeDecoder``)."""

    def __init__(self, folder: Union[str, os.PathLike], threads: int = 1):
        super().__init__(folder, threads)
        if self.config.get("parser") is None:
            raise ValueError(f"{folder} holds a tagger, not a parser; open it with OnnxTagger")
        self.decoder = OffsetTreeDecoder(self.config["parser"])

    def predict(self, sentences: Sequence[Sequence[str]], batch_size: int = 32) -> List[dict]:
        """Per token list: ``tokens``, ``heads`` (1-based, 0 = ROOT), ``relations`` and ``scores`` (the probability
        of each word's tag for its chosen head and relation; 0.0 where no tag names that arc)."""
        out: List[dict] = [{"tokens": [], "heads": [], "relations": [], "scores": []} for _ in sentences]
        for chunk, batch in self._batches(sentences, batch_size):
            trees = self.decoder.decode(self.emissions(batch), [len(words) for words in batch])
            for i, words, (heads, relations, scores) in zip(chunk, batch, trees):
                out[i] = {"tokens": list(words), "heads": heads, "relations": relations, "scores": scores}
        return out


def load(folder: Union[str, os.PathLike], threads: int = 1) -> Union[OnnxTagger, OnnxParser]:
    """The exported student in `folder`: an OnnxParser for a parsing student, else an OnnxTagger."""
    config = json.loads((Path(folder) / CONFIG_FILE).read_text(encoding="utf-8"))
    return (OnnxParser if config.get("parser") is not None else OnnxTagger)(folder, threads)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skd_flair.onnx_runner",
                                     description="tag or parse whitespace-tokenised lines of standard input with an "
                                                 "exported student; one JSON line per input line")
    parser.add_argument("folder", help="the folder written by `skd-flair export MODEL FOLDER --format onnx`")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--conllu", action="store_true",
                        help="a parser's trees as CoNLL-U (ID, FORM, HEAD, DEPREL; other columns _) instead of JSON")
    args = parser.parse_args(argv)
    model = load(args.folder, threads=args.threads)
    if args.conllu and not isinstance(model, OnnxParser):
        parser.error(f"--conllu needs a parser; {args.folder} holds a tagger")
    keys = ("tokens", "heads", "relations") if isinstance(model, OnnxParser) else ("tokens", "tags", "spans")
    lines = [line.split() for line in sys.stdin.read().splitlines()]
    for result in model.predict(lines, batch_size=args.batch_size):
        if args.conllu:
            if result["tokens"]:  # an empty line has no sentence in CoNLL-U
                print(conllu(result))
            continue
        print(json.dumps({key: result[key] for key in keys}, ensure_ascii=False))
    return 0


def conllu(result: dict) -> str:
    """One parsed sentence (`OnnxParser.predict`'s dict) as CoNLL-U lines, ending in the blank separator line."""
    rows = [f"{i}\t{form}\t_\t_\t_\t_\t{head}\t{rel}\t_\t_"
            for i, (form, head, rel) in enumerate(zip(result["tokens"], result["heads"], result["relations"]), 1)]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.exit(main())
