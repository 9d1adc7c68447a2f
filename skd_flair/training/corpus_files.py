"""Checking and cleaning corpus files before Flair reads them: column counts, CoNLL-U fields, prefixes.

Every problem is a ConfigError naming the file and line, so a wrong column format fails at once instead of
as an obscure error inside Flair's reader.
"""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..registry import ConfigError
from . import atomic_path, cache_dir

log = logging.getLogger("skd_flair")
DOCSTART = "-DOCSTART-"

__all__ = ["check_column_file", "check_conllu_file", "strip_prefix_copy", "prepared_column_files",
           "span_tag_schemes"]

_CLEAN_VERSION = "1"  # bump when the cleaned-copy format changes, so old cache entries are not reused
INVISIBLE = "\ufeff\u200b"  # a byte-order mark or zero-width space alone makes a line blank, not a token


def _blank(line: str) -> bool:
    return not line.strip().strip(INVISIBLE)


def _invisible_only(line: str) -> bool:
    return bool(line.strip()) and _blank(line)


def _compile(delimiter: str, where: str) -> "re.Pattern[str]":
    try:
        return re.compile(delimiter)
    except re.error as err:
        raise ConfigError(f"{where}: column_delimiter {delimiter!r} is not a valid regular expression: {err}") from err


def check_column_file(path: Path, n_columns: int, exact: bool = True, column_delimiter: str = r"\s+",
                      comment_symbol: Optional[str] = None, encoding: str = "utf-8", skip_first_line: bool = False,
                      docstart: Optional[str] = DOCSTART, text_column: int = 0, where: str = "corpus") -> int:
    """Check every token line of a column file the way Flair's ``ColumnDataset`` splits it
    (``re.split(column_delimiter, line.rstrip())``): it must have `n_columns` fields (at least that many when
    not `exact`) and a non-empty token. A line holding only a byte-order mark or zero-width spaces counts as blank
    (:func:`blank_invisible_lines` makes the copy Flair reads). Returns the number of sentences; raises
    ConfigError naming file and line."""
    pattern = _compile(column_delimiter, where)

    def check(lineno: int, line: str):
        fields = pattern.split(line.rstrip())
        if docstart is not None and (fields[0] == docstart or (len(fields) > text_column
                                                               and fields[text_column] == docstart)):
            return
        if len(fields) < n_columns or (exact and len(fields) != n_columns):
            raise ConfigError(
                f"{where}: {path}, line {lineno}: expected {n_columns} columns (column_format declares "
                f"columns 0..{n_columns - 1}), found {len(fields)}: {line.rstrip()!r}"
                + ("; set allow_extra_columns: true to ignore extra columns" if exact and len(fields) > n_columns
                   else ""))
        if not fields[text_column]:
            raise ConfigError(f"{where}: {path}, line {lineno}: empty token in column {text_column}: "
                              f"{line.rstrip()!r}")

    return _count_sentences(path, encoding, where, check, _blank, comment_symbol, skip_first_line)


def _count_sentences(path: Path, encoding: str, where: str, check, blank, comment_symbol: Optional[str] = None,
                     skip_first_line: bool = False) -> int:
    """Sentences (runs of token lines between blank lines) of a file, each token line passed to
    ``check(lineno, line)``; an undecodable file is a ConfigError naming it."""
    sentences, in_sentence = 0, False
    try:
        with open(path, encoding=encoding) as handle:
            for lineno, line in enumerate(handle, 1):
                if lineno == 1 and skip_first_line:
                    continue
                if blank(line):
                    in_sentence = False
                    continue
                if comment_symbol is not None and line.startswith(comment_symbol):
                    continue
                check(lineno, line)
                if not in_sentence:
                    sentences += 1
                    in_sentence = True
    except UnicodeDecodeError as err:
        raise ConfigError(f"{where}: {path} is not valid {encoding} text ({err}); set 'encoding'") from err
    return sentences


def _field_span(body: str, pattern: "re.Pattern[str]", column: int) -> Optional[Tuple[int, int]]:
    """(start, end) of field `column` of `body` split by `pattern`, or None when the line has fewer fields."""
    start, index = 0, 0
    for match in pattern.finditer(body):
        if match.end() == match.start():
            continue
        if index == column:
            return start, match.start()
        start, index = match.end(), index + 1
    return (start, len(body)) if index == column else None


def blank_invisible_lines(path: Path, encoding: str = "utf-8", where: str = "corpus") -> Path:
    """`path` itself, or when some of its lines hold nothing but a byte-order mark or zero-width spaces (which
    Flair would read as a token), a copy with those lines empty, written once into ``cache_dir('corpora')``
    under a key of the file's content; the count is logged."""
    data = path.read_bytes()
    try:
        lines = data.decode(encoding).splitlines(keepends=True)
    except UnicodeDecodeError as err:
        raise ConfigError(f"{where}: {path} is not valid {encoding} text ({err}); set 'encoding'") from err
    found = [i for i, line in enumerate(lines) if _invisible_only(line)]
    if not found:
        return path
    log.warning(f"{where}: {len(found)} line(s) of {path} hold only a byte-order mark or zero-width space "
                f"(first: line {found[0] + 1}); they are read as blank lines")
    key = hashlib.sha1(data + repr(("blank-invisible", _CLEAN_VERSION, encoding)).encode("utf-8")).hexdigest()[:20]
    target = cache_dir("corpora") / key / path.name
    if not target.exists():
        for i in found:
            lines[i] = lines[i][len(lines[i].rstrip("\r\n")):]
        with atomic_path(target) as tmp:
            tmp.write_text("".join(lines), encoding=encoding)
    return target


def strip_prefix_copy(path: Path, prefix: str, text_column: int = 0, column_delimiter: str = r"\s+",
                      comment_symbol: Optional[str] = None, encoding: str = "utf-8",
                      skip_first_line: bool = False) -> Path:
    """A copy of column file `path` whose tokens (column `text_column`) lose a leading `prefix` (WikiANN's
    ``en:``), written once into ``cache_dir('corpora')`` under a key of the file's content and the options;
    the copy is written under a temporary name and renamed when complete. Everything else is kept byte for byte."""
    data = path.read_bytes()
    options = repr((_CLEAN_VERSION, prefix, text_column, column_delimiter, comment_symbol, encoding, skip_first_line))
    key = hashlib.sha1(data + options.encode("utf-8")).hexdigest()[:20]
    target = cache_dir("corpora") / key / path.name
    if target.exists():
        return target
    pattern = re.compile(column_delimiter)
    out: List[str] = []
    stripped = tokens = 0
    for lineno, line in enumerate(data.decode(encoding).splitlines(keepends=True), 1):
        body = line.rstrip("\r\n")
        if (lineno == 1 and skip_first_line) or _blank(body) or (
                comment_symbol is not None and line.startswith(comment_symbol)):
            out.append(line)
            continue
        tokens += 1
        span = _field_span(body, pattern, text_column)
        if span is not None and body[span[0]:span[1]].startswith(prefix) and span[1] - span[0] > len(prefix):
            body = body[:span[0]] + body[span[0] + len(prefix):]
            stripped += 1
        out.append(body + line[len(line.rstrip("\r\n")):])
    if stripped == 0:
        log.warning("strip_prefix %r: no token of %s starts with it", prefix, path)
    with atomic_path(target) as tmp:
        tmp.write_text("".join(out), encoding=encoding)
    log.info("strip_prefix %r: %d of %d tokens of %s stripped into %s", prefix, stripped, tokens, path, target)
    return target


def prepared_column_files(where: str, files: Dict[str, Optional[Path]], fmt: Dict[int, str], exact: bool,
                           column_delimiter: str, comment_symbol: Optional[str], encoding: str,
                           skip_first_line: bool, docstart: Optional[str], strip_prefix: Optional[str]
                           ) -> Dict[str, Optional[Path]]:
    text_column = next((c for c, n in fmt.items() if n == "text"), 0)
    n_columns = max(fmt) + 1
    if strip_prefix is not None and (not isinstance(strip_prefix, str) or not strip_prefix):
        raise ConfigError(f"{where}: strip_prefix must be a non-empty string such as 'en:', got {strip_prefix!r}")
    def prepare(split: str, path: Path) -> Path:
        count = check_column_file(path, n_columns, exact, column_delimiter, comment_symbol, encoding,
                                  skip_first_line, docstart, text_column, where)
        if count == 0:
            raise ConfigError(f"{where}: {split}_file '{path}' holds no sentences")
        path = blank_invisible_lines(path, encoding, where)
        if strip_prefix:
            path = strip_prefix_copy(path, strip_prefix, text_column, column_delimiter, comment_symbol, encoding,
                                     skip_first_line)
        return path

    return {split: None if path is None else prepare(split, path) for split, path in files.items()}


def span_tag_schemes(path: Path, fmt: Dict[int, str], column_delimiter: str = r"\s+",
                     comment_symbol: Optional[str] = None, encoding: str = "utf-8",
                     skip_first_line: bool = False) -> Dict[str, str]:
    """The span tag scheme of each labelled column of a column file: ``"BIO"`` when its tags carry ``B-``/``I-``
    prefixes and never ``E-``/``S-``, ``"BIOES"`` when they do; columns without such prefixes are left out."""
    pattern = re.compile(column_delimiter)
    columns = {c: name for c, name in fmt.items() if name != "text"}
    prefixes: Dict[int, set] = {c: set() for c in columns}
    with open(path, encoding=encoding) as handle:
        for lineno, line in enumerate(handle, 1):
            if (lineno == 1 and skip_first_line) or _blank(line) or (
                    comment_symbol is not None and line.startswith(comment_symbol)):
                continue
            fields = pattern.split(line.rstrip())
            for c in columns:
                if c < len(fields) and len(fields[c]) > 2 and fields[c][1] == "-":
                    prefixes[c].add(fields[c][0].upper())
    out = {}
    for c, name in columns.items():
        if prefixes[c] & {"E", "S"}:
            out[name] = "BIOES"
        elif prefixes[c] & {"B", "I"}:
            out[name] = "BIO"
    return out


def check_conllu_file(path: Path, where: str = "corpus") -> int:
    """Check a CoNLL-U file: 10 tab-separated fields a line, IDs that are integers, ranges (``3-4``) or empty
    nodes (``8.1``), integer heads on word lines. Returns the number of sentences; ConfigError names file and line."""
    id_pattern = re.compile(r"^(\d+|\d+-\d+|\d+\.\d+)$")

    def check(lineno: int, line: str):
        body = line.rstrip("\r\n")
        fields = body.split("\t")
        if len(fields) != 10:
            raise ConfigError(f"{where}: {path}, line {lineno}: a CoNLL-U token line has 10 tab-separated "
                              f"columns, found {len(fields)}: {body!r}")
        if not id_pattern.match(fields[0]):
            raise ConfigError(f"{where}: {path}, line {lineno}: bad token ID {fields[0]!r}")
        if fields[0].isdigit() and not fields[6].isdigit():
            raise ConfigError(f"{where}: {path}, line {lineno}: HEAD {fields[6]!r} is not an integer")

    return _count_sentences(path, "utf-8", where, check, lambda line: not line.strip(), "#")
