"""Unlabelled text too large to hold as Flair `Sentence` objects: a dataset that reads each sentence from its
file when it is asked for (``corpus: {type: text, in_memory: false}``).

One pass over the files at start records, for every line that makes a sentence, its file and byte offset (12
bytes a sentence); a sentence is then read, decoded and tokenised again per access, marked unlabelled, and
dropped after its batch. The same rules pick and split the lines as the in-memory reader
(``corpora.plain_sentences``): both go through `PlainLines`.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from flair.data import Sentence
from torch.utils.data import Dataset

from ..models.kd_student import UNLABELLED
from ..registry import ConfigError
from .corpus_files import INVISIBLE

__all__ = ["PlainLines", "LazyTextDataset", "decoded_lines"]


@dataclass
class PlainLines:
    """How a plain-text file becomes sentences: one per non-blank line that is no comment and no document
    separator, split on whitespace or by `tokenizer`, with `strip_prefix` taken off its tokens."""

    encoding: str = "utf-8"
    comment_symbol: Optional[str] = None
    docstart: Optional[str] = None
    drop_docs: bool = True
    strip_prefix: Optional[str] = None
    tokenizer: Optional[Callable[[str], List[str]]] = None
    where: str = "corpus"

    def decode(self, raw: bytes, path, number: int) -> str:
        try:
            line = raw.decode(self.encoding)
        except UnicodeDecodeError as err:
            raise ConfigError(f"{self.where}: {path} line {number} is not valid {self.encoding} text ({err.reason} at "
                              f"byte {err.start}); set 'encoding' or fix the file") from err
        except LookupError as err:
            raise ConfigError(f"{self.where}: unknown encoding {self.encoding!r}") from err
        return line.strip().strip(INVISIBLE)

    def tokens(self, line: str) -> Optional[List[str]]:
        """The sentence's tokens, or None when the line makes no sentence."""
        if (self.comment_symbol is not None and line.startswith(self.comment_symbol)) or not line.strip():
            return None
        tokens = self.tokenizer(line) if self.tokenizer is not None else line.split()
        if not tokens or (self.drop_docs and self.docstart is not None and tokens == [self.docstart]):
            return None
        if self.strip_prefix:
            prefix = self.strip_prefix
            tokens = [t[len(prefix):] if t.startswith(prefix) and len(t) > len(prefix) else t for t in tokens]
        return tokens

    def none_found(self, paths: Sequence[Path]) -> ConfigError:
        return ConfigError(f"{self.where}: '{', '.join(map(str, paths))}' holds no sentences")

    def scan(self, path: Path) -> Iterator[Tuple[int, List[str]]]:
        """(byte offset, tokens) of every line of `path` that makes a sentence."""
        offset = 0
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                tokens = self.tokens(self.decode(raw, path, number))
                if tokens is not None:
                    yield offset, tokens
                offset += len(raw)


class LazyTextDataset(Dataset):
    """Sentences of plain-text files, read from disk on every access (see the module)."""

    def __init__(self, paths: Sequence[Path], lines: PlainLines):
        self.paths, self.lines = [Path(p) for p in paths], lines
        self.files, self.offsets = array("i"), array("q")
        for f, path in enumerate(self.paths):
            for offset, _ in lines.scan(path):
                self.files.append(f)
                self.offsets.append(offset)
        if not self.offsets:
            raise lines.none_found(self.paths)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index: int) -> Sentence:
        path = self.paths[self.files[index]]
        with open(path, "rb") as handle:
            handle.seek(self.offsets[index])
            raw = handle.readline()
        sentence = Sentence(self.lines.tokens(self.lines.decode(raw, path, 0)))
        sentence.add_metadata(UNLABELLED, True)
        return sentence


def decoded_lines(path: Path, encoding: str, where: str) -> Iterator[str]:
    """The lines of a file, split at newlines only, each decoded on its own (an undecodable line is an error
    naming it), with the byte-order mark and zero-width spaces around them dropped."""
    lines = PlainLines(encoding, where=where)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            yield lines.decode(raw, path, number)
