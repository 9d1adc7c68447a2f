"""Tag text with a tagger exported by ``skd-flair export MODEL FOLDER --format onnx``: numpy and onnxruntime only.

The folder holds ``model.onnx`` (the student's graph from token ids to emission scores) and ``tagger.json``
(labels, CRF transitions, the word tables' words, the character dictionary). This module turns whitespace-
tokenised text into ids by Flair's rules, runs the graph, decodes (CRF Viterbi with marginal scores, or softmax
and argmax) and forms spans as Flair does; see ``skd_flair.tagging_runtime``. It imports neither torch nor flair.

    python -m skd_flair.onnx_runner FOLDER < text.txt     # one JSON line per input line

    from skd_flair.onnx_runner import OnnxTagger
    OnnxTagger("export/").predict([["Anna", "went", "to", "Berlin"]])
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .tagging_runtime import Encoder, crf_marginals, softmax, spans_from_bio, viterbi

__all__ = ["CONFIG_FILE", "MODEL_FILE", "OnnxTagger", "main"]

FORMAT = "skd-flair-onnx-tagger"  # skd_flair.models.fast_tagger.ONNX_FORMAT
VERSION = 1
MODEL_FILE = "model.onnx"
CONFIG_FILE = "tagger.json"


class OnnxTagger:
    """An exported tagger (a folder written by ``skd-flair export --format onnx``)."""

    def __init__(self, folder: Union[str, os.PathLike], threads: int = 1):
        import onnxruntime as ort

        folder = Path(folder)
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        if config.get("format") != FORMAT or config.get("version") != VERSION:
            raise ValueError(f"{folder / CONFIG_FILE} is not a {FORMAT} v{VERSION} file")
        self.config = config
        self.labels: List[str] = config["labels"]
        self.tag_type: str = config["tag_type"]
        self.predict_spans: bool = config["predict_spans"]
        self.inputs: List[str] = config["inputs"]
        crf = config["crf"]
        self.crf = None if crf is None else tuple(np.asarray(crf[key], dtype=np.float32)
                                                  for key in ("transitions", "start", "end"))
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
        order = sorted((i for i, words in enumerate(sentences) if len(words)), key=lambda i: len(sentences[i]),
                       reverse=True)  # longest first, as Flair's predict batches
        for start in range(0, len(order), batch_size):
            batch = [sentences[i] for i in order[start:start + batch_size]]
            lengths = [len(words) for words in batch]
            tags, probs = self.decode(self.emissions(batch), lengths)
            scores = np.take_along_axis(probs, np.maximum(tags, 0)[..., None], -1)[..., 0]
            for b, i in enumerate(order[start:start + batch_size]):
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


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skd_flair.onnx_runner",
                                     description="tag whitespace-tokenised lines of standard input with an "
                                                 "exported tagger; one JSON line per input line")
    parser.add_argument("folder", help="the folder written by `skd-flair export MODEL FOLDER --format onnx`")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    tagger = OnnxTagger(args.folder, threads=args.threads)
    lines = [line.split() for line in sys.stdin.read().splitlines()]
    for result in tagger.predict(lines, batch_size=args.batch_size):
        print(json.dumps({key: result[key] for key in ("tokens", "tags", "spans")}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
