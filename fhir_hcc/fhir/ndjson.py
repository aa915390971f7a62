"""NDJSON files (Bulk Data output): the one way they are opened and read line by line."""

from __future__ import annotations

import codecs
import gzip
import zlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, cast

# What reading a file may raise: I/O, a truncated gzip stream, a corrupt one.
_READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)


@cache
def _inflater() -> tuple[ModuleType, tuple[type[BaseException], ...]]:
    """ISA-L (the `speed` extra) inflates gzip several times faster than zlib, the fallback."""
    try:
        from isal import igzip, isal_zlib
    except ImportError:  # pragma: no cover - without the extra
        return gzip, _READ_ERRORS
    return igzip, (*_READ_ERRORS, cast(type[BaseException], isal_zlib.error))


SUFFIXES = (".ndjson", ".ndjson.gz")


class UnreadableFile(OSError):
    """A file that cannot be read to its end (a truncated or corrupt gzip stream, an I/O error)."""


def is_ndjson(path: Path) -> bool:
    return path.name.endswith(SUFFIXES)


def open_ndjson(path: Path) -> BinaryIO:
    """The file's bytes, inflated when its name ends in `.gz`."""
    if path.name.endswith(".gz"):
        return cast(BinaryIO, _inflater()[0].open(path, "rb"))
    # A 1 MB buffer: the default 8 KB one costs a read call every few lines of an export.
    return path.open("rb", buffering=1 << 20)


class Lines:
    """The non-blank lines of an NDJSON file, or of the byte range [start, end) of a plain one
    (`start` at a line start), as (line number, line); numbers count from 1 within the range,
    blank lines included, and `count` is how many lines (blank ones too) were read.

    A UTF-8 byte-order mark at the start of the file is dropped; lines keep their line end
    (JSON decoders take it as whitespace, and not slicing it off spares a copy of every line).
    A file that cannot be read to its end raises `UnreadableFile` after the lines before the
    fault.
    """

    def __init__(self, path: Path, start: int = 0, end: int | None = None) -> None:
        if start and path.name.endswith(".gz"):
            raise ValueError("a gzip file is read whole")
        self.path, self.start, self.end = path, start, end
        self.count = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        # The hot loop of every file read, in one frame: local names only, the count written
        # back at the end.
        ranged = self.end is not None
        left = (self.end or 0) - self.start
        number = 0
        try:
            with open_ndjson(self.path) as handle:
                if self.start:
                    handle.seek(self.start)
                for line in handle:
                    if ranged:
                        if left <= 0:
                            return
                        left -= len(line)
                    number += 1
                    if number == 1 and self.start == 0:
                        line = line.removeprefix(codecs.BOM_UTF8)
                    # The first-byte test spares a strip of every ordinary line.
                    if line[:1] == b"{" or line.strip():
                        yield number, line
        except _inflater()[1] as error:
            raise UnreadableFile(f"cannot read file: {error}") from None
        finally:
            self.count = number


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for every non-blank line of a whole file (see `Lines`)."""
    return iter(Lines(path))
