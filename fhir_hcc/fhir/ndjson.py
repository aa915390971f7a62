"""NDJSON files (Bulk Data output): the one way they are opened and read line by line."""

from __future__ import annotations

import codecs
import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

SUFFIXES = (".ndjson", ".ndjson.gz")


class UnreadableFile(OSError):
    """A file that cannot be read to its end (a truncated or corrupt gzip stream, an I/O error)."""


def is_ndjson(path: Path) -> bool:
    return path.name.endswith(SUFFIXES)


def open_ndjson(path: Path) -> BinaryIO:
    """The file's bytes, inflated when its name ends in `.gz`."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for every non-blank line, numbered from 1 with blank lines counted.

    A UTF-8 byte-order mark at the start is dropped; lines keep their line end (JSON decoders
    take it as whitespace, and not slicing it off spares a copy of every line). A file that
    cannot be read to its end raises `UnreadableFile` after the lines read before the fault.
    """
    try:
        with open_ndjson(path) as handle:
            first = handle.readline()
            if first.startswith(codecs.BOM_UTF8):
                first = first[len(codecs.BOM_UTF8) :]
            if first.strip():
                yield 1, first
            for number, line in enumerate(handle, start=2):
                # The first-byte test spares a strip of every ordinary line.
                if line[:1] == b"{" or line.strip():
                    yield number, line
    except (OSError, EOFError, zlib.error) as error:
        raise UnreadableFile(f"cannot read file: {error}") from None
