"""`fhir-hcc codes` on Spark: the local engine's code counting in the executors, summed on the
driver (a count per distinct code, never the resources)."""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from fhir_hcc.codes_report import CodeRow, code_rows, source_codes
from fhir_hcc.mappings import Mappings
from fhir_hcc.sources import InputProblem, ProblemSink
from fhir_hcc.spark.reading import in_reading_order, read_input, segments

if TYPE_CHECKING:
    from pyspark import Broadcast
    from pyspark.sql import DataFrame, SparkSession

COUNTED_SCHEMA = "file int, start bigint, lines bigint, payload binary"
_COUNTED = pa.schema(
    [("file", pa.int32()), ("start", pa.int64()), ("lines", pa.int64()), ("payload", pa.binary())]
)
_Counted = tuple[Counter[tuple[str, str, str, str, str]], list[InputProblem]]


def collect_codes(
    spark: SparkSession,
    source: str | Path | DataFrame,
    mappings: Mappings,
    sink: ProblemSink,
    *,
    name: str = "table",
) -> list[CodeRow]:
    """`fhir_hcc.codes_report.collect_codes` of a path, URI or bronze DataFrame (see
    `fhir_hcc.spark.build_cohort`): the same rows, and the same problems sent to `sink`."""
    found = read_input(spark, source, name)
    context = spark.sparkContext
    files = context.broadcast((found.numbers, found.labels))
    counted = found.frame.mapInArrow(
        partial(_count, files, context.broadcast(mappings)), COUNTED_SCHEMA
    )
    keyed: list[tuple[tuple[int, int], int, _Counted]] = [
        ((row["file"], row["start"]), row["lines"], pickle.loads(row["payload"]))
        for row in counted.toArrow().to_pylist()
    ]
    keyed += [((number, -1), 0, (Counter(), [problem])) for number, problem in found.warnings]
    total: Counter[tuple[str, str, str, str, str]] = Counter()
    for offset, (counts, problems) in in_reading_order(keyed):
        for problem in problems:
            sink(problem.shifted(offset))
        total.update(counts)
    return code_rows(total, mappings)


def _count(
    files: Broadcast[tuple[dict[str, int], list[str]]],
    mappings: Broadcast[Mappings],
    batches: Iterator[pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    for segment in segments(batches, *files.value):
        problems: list[InputProblem] = []
        counts = source_codes(segment.source, mappings.value, problems.append)
        payload = pickle.dumps((counts, problems), pickle.HIGHEST_PROTOCOL)
        row = [[segment.file], [segment.start], [segment.source.lines], [payload]]
        yield pa.RecordBatch.from_arrays(
            [pa.array(values, type) for values, type in zip(row, _COUNTED.types, strict=True)],
            schema=_COUNTED,
        )
