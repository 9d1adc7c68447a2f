"""Make the bundled WikiANN English slice: resources/data/wikiann_en/{train,dev,test}.txt.

Takes the first N sentences of each split of the WikiANN English (XTREME PAN-X) files in ../shared/data,
strips the per-token language prefix ("en:"), and writes CoNLL column format ``token TAB tag`` with a blank line
after each sentence. Deterministic: running it again on the same source gives byte-identical files.

    python experiments/data/make_wikiann_slice.py [--source DIR] [--out DIR] [--train 400 --dev 100 --test 100]
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "ner" / "wikiann" / "en"
DEFAULT_OUT = ROOT / "resources" / "data" / "wikiann_en"
PREFIX = "en:"


def read_sentences(path: Path):
    """Sentences as lists of (token, tag); blank lines separate sentences."""
    sentence = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, 1):
            line = line.rstrip("\n")
            if not line.strip():
                if sentence:
                    yield sentence
                    sentence = []
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise ValueError(f"{path}, line {lineno}: expected 'token<TAB>tag', got {line!r}")
            token, tag = fields
            if not token.startswith(PREFIX) or len(token) == len(PREFIX):
                raise ValueError(f"{path}, line {lineno}: token {token!r} lacks the {PREFIX!r} prefix")
            sentence.append((token[len(PREFIX):], tag))
    if sentence:
        yield sentence


def write_slice(source: Path, target: Path, count: int) -> int:
    sentences = []
    for sentence in read_sentences(source):
        if len(sentences) == count:
            break
        sentences.append(sentence)
    if len(sentences) < count:
        raise ValueError(f"{source} has only {len(sentences)} sentences, {count} asked")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8", newline="\n") as out:
        for sentence in sentences:
            for token, tag in sentence:
                out.write(f"{token}\t{tag}\n")
            out.write("\n")
    return len(sentences)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--dev", type=int, default=100)
    parser.add_argument("--test", type=int, default=100)
    args = parser.parse_args(argv)
    for split in ("train", "dev", "test"):
        source, target = args.source / f"{split}.txt", args.out / f"{split}.txt"
        n = write_slice(source, target, getattr(args, split))
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        print(f"{target}: first {n} sentences of {source} (sha256 {digest}...), {target.stat().st_size} bytes")


if __name__ == "__main__":
    main()
