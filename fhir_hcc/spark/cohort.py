"""The cohort step on Spark: the local engine's mappers and derivation, run in the executors.

1. Map (where the input is read): each segment (`reading`) goes through `collect`, the local
   engine's mapping stage, into per-patient facts. Out come one row per (segment, patient)
   holding that patient's pickled `PatientFacts`, and one summary row per segment: its notes,
   input problems, counts, Medication classes, replaced-by links and line count.
2. Driver: the summaries, in reading order, make the run's totals (`Collected.merge`), the
   Medication map (broadcast) and the groups of patients joined by replaced-by links.
3. Shuffle: only the facts, by patient (a linked group goes to its first member's key), sorted
   within each patient by reading order, so merging the pieces (`Collected.merge`) gives what
   one process reading the whole input would have collected.
4. Derive (where a patient's facts meet): `derive_patients`, the local engine's own code, per
   patient or linked group. Out come each patient's step, reason and pickled `PatientResult`,
   with the notes made there.
5. Driver: the flow from counts per (step, reason), the QC notes, and the included patients,
   assembled by the local engine's `cohort_table`, `qc_table` and `flow_of`.
"""

from __future__ import annotations

import logging
import pickle
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fhir_hcc.cohort import build
from fhir_hcc.cohort.build import (
    CohortResult,
    cohort_table,
    collect,
    derive_patients,
    flow_of,
    qc_table,
)
from fhir_hcc.cohort.derive import PatientResult
from fhir_hcc.config import CohortConfig, load_config
from fhir_hcc.contract import COLUMN_TYPES
from fhir_hcc.facts import Collected, Drugs, Note
from fhir_hcc.mappings import Mappings, load_mappings
from fhir_hcc.sources import InputProblem
from fhir_hcc.spark.reading import Input, in_reading_order, read_input, segments

if TYPE_CHECKING:
    from pyspark import Broadcast
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)
_PICKLE = pickle.HIGHEST_PROTOCOL
SUMMARY, FACTS = 0, 1
MAPPED_SCHEMA = "kind tinyint, key string, file int, start bigint, pos int, payload binary"
DERIVED_SCHEMA = (
    "patient_id string, step string, reason string, included boolean, result binary, "
    "notes array<struct<patient:string,rule:string,source:string,detail:string>>, "
    "skipped map<string,bigint>"
)
_MAPPED = pa.schema(
    [
        ("kind", pa.int8()),
        ("key", pa.string()),
        ("file", pa.int32()),
        ("start", pa.int64()),
        ("pos", pa.int32()),
        ("payload", pa.binary()),
    ]
)
_NOTE = pa.struct([(name, pa.string()) for name in ("patient", "rule", "source", "detail")])
_DERIVED = pa.schema(
    [
        ("patient_id", pa.string()),
        ("step", pa.string()),
        ("reason", pa.string()),
        ("included", pa.bool_()),
        ("result", pa.binary()),
        ("notes", pa.list_(_NOTE)),
        ("skipped", pa.map_(pa.string(), pa.int64())),
    ]
)
# The cohort contract's kinds as Spark and Arrow types.
_SPARK_TYPES = {
    "text": "string",
    "category": "string",
    "date": "date",
    "integer": "bigint",
    "event": "bigint",
    "number": "double",
}
_ARROW_TYPES = {
    "text": pa.string(),
    "category": pa.string(),
    "date": pa.date32(),
    "integer": pa.int64(),
    "event": pa.int64(),
    "number": pa.float64(),
}
TABLE_SCHEMA = ", ".join(f"{name} {_SPARK_TYPES[kind]}" for name, kind in COLUMN_TYPES.items())
_TABLE = pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in COLUMN_TYPES.items()])


@dataclass(slots=True)
class SparkCohortResult(CohortResult):
    """`fhir_hcc.build_cohort`'s result, plus the cohort table as a Spark DataFrame (typed as
    the contract says). `patients` looks each patient up in Spark when asked for."""

    frame: DataFrame = field(repr=False)


@dataclass(slots=True)
class _Summary:
    """What one segment found besides patient facts."""

    collected: Collected  # notes, problems, counts, Medication classes; no patients
    lines: int
    links: list[tuple[str, str]]  # (patient, replaced-by target) of the Patients read here


def build_cohort(
    spark: SparkSession,
    source: str | Path | DataFrame,
    config: CohortConfig | str | Path | None = None,
    mappings: Mappings | None = None,
    *,
    name: str = "table",
) -> SparkCohortResult:
    """The cohort of a folder, file or URI of FHIR NDJSON / JSON, or of a DataFrame with one
    column of resource JSON (a bronze table, its rows named `name:row` in problems): the same
    table, flow, QC and per-patient derivations as `fhir_hcc.build_cohort`."""
    if not isinstance(config, CohortConfig):
        config = load_config(config)
    mappings = mappings or load_mappings(config.mappings)
    context = spark.sparkContext
    setup = context.broadcast((mappings, config))
    found = read_input(spark, source, name)
    files = context.broadcast((found.numbers, found.labels))
    mapped = found.frame.mapInArrow(partial(_map, files, setup), MAPPED_SCHEMA).persist()
    try:
        totals = _totals(mapped, found)
        shared = context.broadcast((totals.medications, _problems_by_patient(totals.collected)))
        derived = _derive(spark, mapped, _groups(totals.links), setup, shared).persist()
        kept = derived.where("included or size(notes) > 0 or size(skipped) > 0")
        rows = kept.select("included", "result", "notes", "skipped").toArrow().to_pylist()
    finally:
        mapped.unpersist()
    notes = list(totals.collected.notes)
    included = []
    for row in rows:
        notes += [Note(**note) for note in row["notes"]]
        totals.collected.skipped.update(dict(row["skipped"]))
        if row["included"]:
            included.append(pickle.loads(row["result"]))
    outcomes = Counter(
        {(r["step"], r["reason"]): r["count"] for r in _outcomes(derived).toArrow().to_pylist()}
    )
    included.sort(key=lambda result: result.patient_id)
    collected = totals.collected
    return SparkCohortResult(
        table=cohort_table(included),
        flow=flow_of(outcomes, collected),
        qc=qc_table(notes, collected.problems),
        patients=SparkPatients(derived, sum(outcomes.values())),
        problems=collected.problems,
        frame=_table_frame(derived),
    )


# -- 1. map -------------------------------------------------------------------------------------


def _map(
    files: Broadcast[tuple[dict[str, int], list[str]]],
    setup: Broadcast[tuple[Mappings, CohortConfig]],
    batches: Iterator[pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    mappings, config = setup.value
    # The driver logs each problem once its line is counted from the file's start.
    logging.getLogger(build.__name__).setLevel(logging.ERROR)
    for segment in segments(batches, *files.value):
        collected = collect(segment.source, mappings, config)
        rows: list[tuple[Any, ...]] = []
        links = []
        for pos, (patient_id, facts) in enumerate(collected.patients.items()):
            payload = pickle.dumps(facts, _PICKLE)
            rows.append((FACTS, patient_id, segment.file, segment.start, pos, payload))
            target = facts.demographics.replaced_by if facts.demographics else None
            if target:
                links.append((patient_id, target))
        collected.patients = {}
        summary = _Summary(collected, segment.source.lines, links)
        rows.append((SUMMARY, None, segment.file, segment.start, 0, pickle.dumps(summary)))
        columns = zip(*rows, strict=True)
        yield pa.RecordBatch.from_arrays(
            [pa.array(values, type) for values, type in zip(columns, _MAPPED.types, strict=True)],
            schema=_MAPPED,
        )


# -- 2. driver: totals, Medication map, linked groups ---------------------------------------------


@dataclass(slots=True)
class _Totals:
    collected: Collected = field(default_factory=Collected)
    links: list[tuple[str, str]] = field(default_factory=list)

    @property
    def medications(self) -> dict[str, Drugs]:
        return self.collected.medications


def _totals(mapped: DataFrame, found: Input) -> _Totals:
    """The segments' summaries merged in reading order, problem lines counted from each file's
    start; files Spark cannot read are warned about in their place."""
    summaries = mapped.where(f"kind = {SUMMARY}").select("file", "start", "payload")
    keyed = []
    for row in summaries.toArrow().to_pylist():
        summary: _Summary = pickle.loads(row["payload"])
        keyed.append(((row["file"], row["start"]), summary.lines, summary))
    for number, problem in found.warnings:
        keyed.append(((number, -1), 0, _Summary(Collected(problems=[problem]), 0, [])))
    totals = _Totals()
    for offset, summary in in_reading_order(keyed):
        part = summary.collected
        part.problems = [problem.shifted(offset) for problem in part.problems]
        for problem in part.problems:
            log.warning("%s", problem)
        totals.collected.merge(part)
        totals.links += summary.links
    return totals


# What every group of patients needs from the whole run: the Medication map, and the input
# problems of each patient's own resources (their rows are flagged).
_Shared = tuple[dict[str, Drugs], dict[str, list[InputProblem]]]


def _problems_by_patient(collected: Collected) -> dict[str, list[InputProblem]]:
    found: dict[str, list[InputProblem]] = {}
    for problem in collected.problems:
        if problem.patient and not problem.warning:
            found.setdefault(problem.patient, []).append(problem)
    return found


def _groups(links: list[tuple[str, str]]) -> dict[str, str]:
    """Patient -> the key of its group, for patients joined by replaced-by links (any chain or
    cycle): `merge_replaced_patients` needs a whole group in one place. Unlinked patients are
    their own group and not listed."""
    parent: dict[str, str] = {}

    def root(patient: str) -> str:
        while parent.get(patient, patient) != patient:
            patient = parent[patient]
        return patient

    for patient, target in links:
        first, second = sorted((root(patient), root(target)))
        parent.setdefault(first, first)
        parent[second] = first
    return {patient: root(patient) for patient in parent}


# -- 3. shuffle and 4. derive ---------------------------------------------------------------------


def _derive(
    spark: SparkSession,
    mapped: DataFrame,
    groups: dict[str, str],
    setup: Broadcast[tuple[Mappings, CohortConfig]],
    shared: Broadcast[_Shared],
) -> DataFrame:
    from pyspark.sql import functions as F

    pieces = mapped.where(f"kind = {FACTS}").select("key", "file", "start", "pos", "payload")
    if groups:
        keys = spark.createDataFrame(list(groups.items()), "key string, group string")
        pieces = pieces.join(F.broadcast(keys), "key", "left")
        pieces = pieces.withColumn("group", F.coalesce("group", "key"))
    else:
        pieces = pieces.withColumn("group", F.col("key"))
    # As many patient partitions as input partitions: the facts are a fraction of the input.
    partitions = mapped.rdd.getNumPartitions()
    ordered = pieces.repartition(partitions, "group")
    ordered = ordered.sortWithinPartitions("group", "file", "start", "pos")
    return ordered.select("group", "key", "payload").mapInArrow(
        partial(_derive_groups, setup, shared), DERIVED_SCHEMA
    )


def _derive_groups(
    setup: Broadcast[tuple[Mappings, CohortConfig]],
    shared: Broadcast[_Shared],
    batches: Iterator[pa.RecordBatch],
) -> Iterator[pa.RecordBatch]:
    _, config = setup.value
    medications, problems = shared.value
    rows = (
        row
        for batch in batches
        for row in zip(*(column.to_pylist() for column in batch.columns), strict=True)
    )
    for _, pieces in groupby(rows, key=itemgetter(0)):
        merged = Collected()
        for _, patient_id, payload in pieces:
            merged.merge(Collected(patients={patient_id: pickle.loads(payload)}))
        merged.medications = medications
        merged.problems = [p for patient in merged.patients for p in problems.get(patient, ())]
        patients, notes = derive_patients(merged, config)
        yield _derived_batch(patients, notes, merged.skipped)


def _derived_batch(
    patients: dict[str, PatientResult], notes: list[Note], skipped: Counter[str]
) -> pa.RecordBatch:
    """One row per patient; the group's notes and skip counts ride on the first row."""
    results = list(patients.values())
    columns = {
        "patient_id": [result.patient_id for result in results],
        "step": [result.step for result in results],
        "reason": [result.reason for result in results],
        "included": [result.included for result in results],
        "result": [pickle.dumps(result, _PICKLE) for result in results],
        "notes": [[_note_row(note) for note in notes]] + [[]] * (len(results) - 1),
        "skipped": [list(skipped.items())] + [[]] * (len(results) - 1),
    }
    return pa.RecordBatch.from_pydict(columns, schema=_DERIVED)


def _note_row(note: Note) -> dict[str, str]:
    return {
        "patient": note.patient,
        "rule": note.rule,
        "source": note.source,
        "detail": note.detail,
    }


# -- 5. the result --------------------------------------------------------------------------------


def _outcomes(derived: DataFrame) -> DataFrame:
    return derived.groupBy("step", "reason").count()


def _table_frame(derived: DataFrame) -> DataFrame:
    """The included patients as the cohort table, made by `cohort_table` in the executors."""
    included = derived.where("included").select("result")
    return included.mapInArrow(_table_batches, TABLE_SCHEMA).orderBy("patient_id")


def _table_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    results = [pickle.loads(data) for batch in batches for data in batch.column(0).to_pylist()]
    if results:
        table = pa.Table.from_pandas(cohort_table(results), schema=_TABLE, preserve_index=False)
        yield from table.to_batches()


class SparkPatients(Mapping[str, PatientResult]):
    """Every patient's derivation, by patient id, fetched from Spark when asked for."""

    def __init__(self, derived: DataFrame, count: int) -> None:
        self._derived = derived
        self._count = count

    def __getitem__(self, patient_id: str) -> PatientResult:
        found = self._derived.where(self._derived.patient_id == patient_id).select("result")
        rows = found.take(1)
        if not rows:
            raise KeyError(patient_id)
        return pickle.loads(rows[0]["result"])

    def __iter__(self) -> Iterator[str]:
        ids = self._derived.select("patient_id").orderBy("patient_id")
        return (row["patient_id"] for row in ids.toLocalIterator())

    def __len__(self) -> int:
        return self._count
