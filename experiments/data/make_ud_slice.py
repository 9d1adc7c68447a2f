"""Make the bundled UD English-EWT slice: resources/data/ud_en_ewt/{train,dev,test}.conllu (+ LICENSE.txt).

Copies the first N sentences of each split of UD English-EWT from ../shared/data verbatim (comment lines such
as ``# sent_id`` / ``# text`` / ``# newdoc``, multiword-token ranges and empty nodes included), and copies the
treebank's LICENSE.txt (CC BY-SA 4.0) next to them. Deterministic.

    python experiments/data/make_ud_slice.py [--source DIR] [--out DIR] [--train 300 --dev 100 --test 100]
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "ud" / "en_ewt"
DEFAULT_OUT = ROOT / "resources" / "data" / "ud_en_ewt"


def read_blocks(path: Path):
    """Sentence blocks (lists of lines, comments included); blank lines separate sentences."""
    block = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if not line.strip():
                if block:
                    yield block
                    block = []
                continue
            block.append(line)
    if block:
        yield block


def write_slice(source: Path, target: Path, count: int) -> int:
    blocks = []
    for block in read_blocks(source):
        if len(blocks) == count:
            break
        if not any(line and line[0].isdigit() for line in block):
            raise ValueError(f"{source}: a sentence block without token lines: {block[:2]}")
        blocks.append(block)
    if len(blocks) < count:
        raise ValueError(f"{source} has only {len(blocks)} sentences, {count} asked")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8", newline="\n") as out:
        for block in blocks:
            out.write("\n".join(block) + "\n\n")
    return len(blocks)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--dev", type=int, default=100)
    parser.add_argument("--test", type=int, default=100)
    args = parser.parse_args(argv)
    for split in ("train", "dev", "test"):
        source, target = args.source / f"en_ewt-ud-{split}.conllu", args.out / f"{split}.conllu"
        n = write_slice(source, target, getattr(args, split))
        digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
        print(f"{target}: first {n} sentences of {source} (sha256 {digest}...), {target.stat().st_size} bytes")
    shutil.copyfile(args.source / "LICENSE.txt", args.out / "LICENSE.txt")
    print(f"{args.out / 'LICENSE.txt'}: copied from {args.source / 'LICENSE.txt'}")


if __name__ == "__main__":
    main()
