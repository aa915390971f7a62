"""The input as Spark reads it, and as the executors hand it to the local engine's mappers.

Files are listed on the driver in the local engine's reading order (`FileSource.files()` for a
local folder; the Hadoop file system of a URI, sorted the same way) and read by Spark:

- plain `*.ndjson` by the text source, which splits a large file at line starts;
- `*.ndjson.gz` and `*.json` whole (binaryFile): a gzip stream cannot be split, a Bundle is one
  JSON document, and a truncated gzip file must be an input problem, not a failed task (the text
  source fails the task, or with `ignoreCorruptFiles` drops the rest of the file silently). The
  bytes are put in a local temporary file and read by `FileSource`, the local engine's reader;
- a DataFrame of resource JSON (a bronze table), partition by partition.

Each split, whole file or partition is a *segment*, keyed (file number, start): its first byte,
or the partition number. The executors number lines within a segment and count them; the driver
adds the lines of a file's earlier segments (`InputProblem.shifted`), so a problem names the
file's own line. Rows reach Python as bytes (the text source keeps a line's bytes as they are,
invalid UTF-8 included) without their line end; the local engine judges a line the same either
way.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

from fhir_hcc.errors import InputError
from fhir_hcc.fhir.ndjson import is_ndjson
from fhir_hcc.inputs import is_uri
from fhir_hcc.sources import (
    FileSource,
    InputProblem,
    Item,
    Origin,
    ProblemSink,
    is_listed,
    not_data_note,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

# How a row of the input frame is read (its `kind` column).
LINE = 0  # a line of a plain NDJSON split; `path` is URL-encoded, as Spark's _metadata has it
WHOLE = 1  # a whole JSON or gzip NDJSON file; `path` as listed
ROW = 2  # a row of a table; `path` is the table's name

T = TypeVar("T")
INPUT_SCHEMA = "kind tinyint, path string, start bigint, value binary"
_GLOB = re.compile(r"([\\{}\[\]*?])")


@dataclass(frozen=True, slots=True)
class Input:
    """What the executors read, and how their segments name the input."""

    frame: DataFrame  # INPUT_SCHEMA
    numbers: dict[str, int]  # path as the executors see it -> file number (reading order)
    labels: list[str]  # file number -> location named in problems
    warnings: list[tuple[int, InputProblem]] = field(default_factory=list)  # (file, problem)


def read_input(spark: SparkSession, source: str | Path | DataFrame, name: str) -> Input:
    """The input frame of a path or URI (a folder or one file), or of a DataFrame whose one
    column holds resource JSON; `name` labels the DataFrame's rows in problems."""
    if not isinstance(source, str | Path):
        return _table_input(spark, source, name)
    listed = _listed(spark, str(source))
    numbers: dict[str, int] = {}
    warnings = []
    lines: list[str] = []
    whole: list[str] = []
    for number, (label, path) in enumerate(listed):
        file_name = path.rsplit("/", 1)[-1]
        note = not_data_note(label)
        if note is not None:  # a manifest, a client's log, a hidden file: noted, as locally
            warnings.append((number, note))
        else:
            numbers[path] = number
            plain = is_ndjson(Path(file_name)) and not file_name.endswith(".gz")
            (lines if plain else whole).append(_GLOB.sub(r"\\\1", path))
    labels = [label for label, _ in listed]
    return Input(_file_frame(spark, lines, whole), numbers, labels, warnings)


def _file_frame(spark: SparkSession, lines: list[str], whole: list[str]) -> DataFrame:
    from pyspark.sql import functions as F

    frames = []
    if lines:
        text = spark.read.option("lineSep", "\n").text(lines)
        frames.append(
            text.select(
                F.lit(LINE).cast("tinyint").alias("kind"),
                F.col("_metadata.file_path").alias("path"),
                F.col("_metadata.file_block_start").alias("start"),
                F.col("value").cast("binary").alias("value"),
            )
        )
    if whole:
        files = spark.read.format("binaryFile").load(whole)
        frames.append(
            files.select(
                F.lit(WHOLE).cast("tinyint").alias("kind"),
                F.col("path"),
                F.lit(0).cast("bigint").alias("start"),
                F.col("content").alias("value"),
            )
        )
    if not frames:
        return spark.createDataFrame([], INPUT_SCHEMA)
    frame = frames[0]
    for other in frames[1:]:
        frame = frame.unionByName(other)
    return frame


def _table_input(spark: SparkSession, table: DataFrame, name: str) -> Input:
    from pyspark.sql import functions as F

    if len(table.columns) != 1:
        raise InputError(
            f"{name}: a table source has one column of resource JSON, not {len(table.columns)} "
            f"({', '.join(table.columns)}); select it first"
        )
    frame = table.select(
        F.lit(ROW).cast("tinyint").alias("kind"),
        F.lit(name).alias("path"),
        F.spark_partition_id().cast("bigint").alias("start"),
        F.col(table.columns[0]).cast("binary").alias("value"),
    )
    return Input(frame, {name: 0}, [name])


def _listed(spark: SparkSession, source: str) -> list[tuple[str, str]]:
    """(location named in problems, path as Spark has it) of every file the local engine would
    open or note, in its reading order.

    A path without a scheme that exists here is a local path, named as the local engine names
    it; anything else (`s3a://`, `abfss://`, `dbfs:/`, or a path on Spark's default file
    system) is listed through Hadoop and named by its URI."""
    if not is_uri(source) and os.path.exists(source):
        paths = [part.path for part in FileSource(source).parts()]
        return [(str(path), "file:" + os.path.abspath(path)) for path in paths]
    return _hadoop_files(spark, source)


def _hadoop_files(spark: SparkSession, uri: str) -> list[tuple[str, str]]:
    """`FileSource`'s choice of files, made through Hadoop's file system."""
    jvm: Any = spark._jvm  # py4j: the driver's JVM, untyped
    root = jvm.org.apache.hadoop.fs.Path(uri)
    filesystem = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not filesystem.exists(root):
        raise InputError(f"{uri}: no such file or directory")
    qualified = filesystem.makeQualified(root).toString()
    if filesystem.getFileStatus(root).isFile():
        return [(qualified, qualified)]
    prefix = qualified.rstrip("/") + "/"
    found = []
    listing = filesystem.listFiles(root, True)
    while listing.hasNext():
        path = listing.next().getPath().toString()
        if is_listed(path.removeprefix(prefix).split("/")):  # as the local engine lists
            found.append(path)
    # The local engine's order: sorted paths, compared part by part.
    found.sort(key=lambda path: path.removeprefix(prefix).split("/"))
    return [(path, path) for path in found]


def in_reading_order(keyed: Iterable[tuple[tuple[int, int], int, T]]) -> Iterator[tuple[int, T]]:
    """Items keyed by their segment (file, start) with its line count, in reading order, each
    with the lines of its file before it (to add to the line numbers of its problems)."""
    lines_before: Counter[int] = Counter()
    for (number, _), lines, item in sorted(keyed, key=itemgetter(0)):
        yield lines_before[number], item
        lines_before[number] += lines


# -- in the executors ---------------------------------------------------------------------------


@dataclass(slots=True)
class Segment:
    file: int
    start: int
    source: SplitLines | WholeFile


def segments(
    batches: Iterator[pa.RecordBatch], numbers: dict[str, int], labels: list[str]
) -> Iterator[Segment]:
    """The segments of one task's rows, in the order Spark hands them over (rows of a segment
    arrive together and in order). Each segment's source must be read before the next."""
    rows = _rows(batches)
    for (kind, path, start), group in groupby(rows, key=lambda row: row[:3]):
        number = numbers[unquote(path) if kind == LINE else path]
        values = (row[3] for row in group)
        if kind == WHOLE:
            source: SplitLines | WholeFile = WholeFile(labels[number], next(values))
        else:
            source = SplitLines(labels[number], values)
        yield Segment(number, start, source)


def _rows(batches: Iterator[pa.RecordBatch]) -> Iterator[tuple[Any, ...]]:
    for batch in batches:
        yield from zip(*(column.to_pylist() for column in batch.columns), strict=True)


class SplitLines:
    """A segment of lines (or table rows) in order, numbered from 1 within the segment; `lines`
    counts them all, blank ones included, as the local engine numbers them."""

    def __init__(self, location: str, values: Iterator[bytes | None]) -> None:
        self.location = location
        self.values = values
        self.lines = 0

    def read(self, report: ProblemSink) -> Iterator[Item]:
        for value in self.values:
            self.lines += 1
            if value is not None and (value[:1] == b"{" or value.strip()):
                yield value, Origin(self.location, self.lines)


class WholeFile:
    """A JSON or gzip NDJSON file that Spark handed over whole, read by the local engine's own
    `FileSource` from a temporary copy and named by its real location."""

    lines = 0  # a whole file is one segment: nothing to number after it

    def __init__(self, location: str, content: bytes) -> None:
        self.location = location
        self.content = content

    def read(self, report: ProblemSink) -> Iterator[Item]:
        with tempfile.TemporaryDirectory(prefix="fhir-hcc-") as folder:
            copy = Path(folder) / self.location.rsplit("/", 1)[-1]
            copy.write_bytes(self.content)

            def relabelled(problem: InputProblem) -> None:
                report(replace(problem, origin=self._origin(problem.origin)))

            for item, origin in FileSource(copy).read(relabelled):
                yield item, self._origin(origin)

    def _origin(self, origin: Origin) -> Origin:
        return Origin(self.location, origin.line)
