"""The cohort stage end to end: source -> mappers -> patient facts -> cohort table, flow and QC."""

from __future__ import annotations

import importlib
import json
import logging
import multiprocessing
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fhir_hcc.cohort.derive import FLOW_STEPS, PatientResult, derive_patient
from fhir_hcc.cohort.evidence import merge_replaced_patients, prepare
from fhir_hcc.config import CohortConfig, load_config
from fhir_hcc.contract import COLUMNS, EXTRA_COLUMNS, as_types
from fhir_hcc.errors import InputError
from fhir_hcc.facts import Collected, Note
from fhir_hcc.fhir.references import label
from fhir_hcc.inputs import is_server_url, open_source
from fhir_hcc.mappers import mapping_context
from fhir_hcc.mappings import Mappings, load_mappings
from fhir_hcc.problems import InputProblem, Origin, ProblemSink
from fhir_hcc.r4b_check import validation_errors
from fhir_hcc.sources import (
    FileSource,
    InTurn,
    Item,
    ReadProgress,
    Source,
    partitions,
    shares_of,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

QC_COLUMNS = ("patient_id", "rule", "source", "detail")


@dataclass(slots=True)
class CohortResult:
    """The cohort table (one row per included patient), the flow diagram counts, QC records,
    and every patient's derivation (for `explain`)."""

    table: pd.DataFrame
    flow: dict[str, Any]
    qc: pd.DataFrame
    patients: Mapping[str, PatientResult] = field(repr=False)  # by patient id
    problems: list[InputProblem] = field(repr=False)


def build_cohort(
    source: str | Path | Source,
    config: CohortConfig | str | Path | None = None,
    *,
    strict: bool = False,
    mappings: Mappings | None = None,
    workers: int | None = None,
    server_options: dict[str, Any] | None = None,
    progress: ReadProgress | None = None,
) -> CohortResult:
    """Build the salvage-surgery cohort from FHIR resources.

    `source` is a directory or file of FHIR JSON / NDJSON(.gz), an http(s) FHIR base URL, or a
    `Source`. With `strict`, the first bad input raises `InputError`; otherwise it is counted
    in the flow and QC and the run goes on. `server_options` (for example
    `{"options": ClientOptions(...), "workdir": path}`) go to `fhir_hcc.server.ServerSource`.
    Large NDJSON inputs are read by `workers` processes (default: one per core, up to 4).
    `progress` is called with (bytes read, bytes in all) as the files of a file source are read.
    """
    if not isinstance(config, CohortConfig):
        config = load_config(config)
    mappings = mappings or load_mappings(config.mappings)
    if is_server_url(source):  # searched for the codes of the mappings in use, site codes too
        server_options = {"search_codes": mappings.search_codes(), **(server_options or {})}
    opened = open_source(source, **(server_options or {}))
    workers = workers or _default_workers()
    shares = _shares(opened, workers) if not strict else []
    if len(shares) > 1:
        collected = collect_parallel(shares, mappings, config, workers, progress)
    else:
        if progress is not None and isinstance(opened, FileSource):
            opened = InTurn(opened.parts(), progress)
        collected = collect(opened, mappings, config, strict=strict)
    result = derive_cohort(collected, config)
    case_list = getattr(opened, "case_list", None)  # a server source's case-list resolution
    if case_list is not None:
        result.flow["input"]["case_list"] = case_list
    return result


def collect(
    source: Source,
    mappings: Mappings,
    config: CohortConfig,
    *,
    strict: bool = False,
) -> Collected:
    """Stream every resource of a source through the mappers into per-patient facts."""
    collected = Collected()
    problems: list[InputProblem] = []

    def sink(problem: InputProblem) -> None:
        if strict and not problem.warning:
            raise InputError(str(problem))
        log.warning("%s", problem)
        problems.append(problem)

    items = source.read(sink)
    ctx = mapping_context(mappings, collected, sink, config.zone())
    ctx.map(_checked(items, sink) if strict else items)
    collected.problems = problems
    return collected


def _checked(items: Iterable[Item], sink: ProblemSink) -> Iterator[Item]:
    """The items, each checked against the whole R4 structure once it has been mapped (a strict
    run finishes only on valid resources; a shape problem stops it first, with the message a
    lenient run gives)."""
    for line, origin in items:
        yield line, origin
        _check_structure(line, origin, sink)


def _check_structure(line: bytes, origin: Origin, sink: ProblemSink) -> None:
    """Report how a resource fails its R4B model (JSON it cannot decode is the mappers' report)."""
    try:
        resource = orjson.loads(line)
    except orjson.JSONDecodeError:
        return
    if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
        reference = label(resource["resourceType"], resource.get("id"))
        try:
            errors = validation_errors(resource)
        except RecursionError:  # the models validate recursively
            errors = [("(resource)", "nested too deeply to validate")]
        for path, message in errors:
            sink(InputProblem(origin, reference, path, message))


# Below this much NDJSON, starting worker processes costs more than it saves.
PARALLEL_MIN_BYTES = 64 * 2**20
# A share's progress is reported when it is done: a few seconds of reading at most.
SHARE_MAX_BYTES = 512 * 2**20


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def _shares(source: Source, workers: int) -> list[InTurn]:
    """The shares of a large file source its workers read; [] when one process should read it
    all. Each worker reads about three: every share's facts are sent back to this process
    (fewer shares send less), and the shares left at the end keep both workers busy."""
    if workers < 2 or not isinstance(source, FileSource):
        return []
    total = sum(path.stat().st_size for path in source.files())
    if total < PARALLEL_MIN_BYTES:
        return []
    share_bytes = min(max(total // (workers * 3), 16 * 2**20), SHARE_MAX_BYTES)
    return shares_of(partitions(source, share_bytes), share_bytes)


def collect_parallel(
    shares: list[InTurn],
    mappings: Mappings,
    config: CohortConfig,
    workers: int,
    progress: ReadProgress | None = None,
) -> Collected:
    """`collect` over shares of a source in worker processes, merged in reading order: the
    same result, line numbers of problems included, as one process reading them in turn."""
    # fork shares the loaded mappings for free; spawn (Windows, macOS) pickles them to each worker.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    collected = Collected()
    lines_before: Counter[str] = Counter()  # of each file, in the shares merged so far
    sizes = [share.size for share in shares]
    done, total = 0, sum(sizes)
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        jobs = [(share, mappings, config) for share in shares]
        results = pool.map(_collect_share, jobs)
        # Nothing comes back before a share is read: the tables' library is loaded meanwhile.
        importlib.import_module("pandas")
        for size, (found, lines) in zip(sizes, results, strict=True):
            found.problems = [
                problem.shifted(lines_before[problem.origin.location]) for problem in found.problems
            ]
            lines_before.update(lines)
            collected.merge(found)
            done += size
            if progress is not None:
                progress(done, total)
    return collected


def _collect_share(job: tuple[InTurn, Mappings, CohortConfig]) -> tuple[Collected, dict[str, int]]:
    share, mappings, config = job
    found = collect(share, mappings, config)
    return found, share.lines


def derive_cohort(collected: Collected, config: CohortConfig) -> CohortResult:
    patients, notes = derive_patients(collected, config)
    table = cohort_table(result for result in patients.values() if result.included)
    qc = qc_table(notes, collected.problems)
    return CohortResult(table, flow_counts(patients, collected), qc, patients, collected.problems)


def derive_patients(
    collected: Collected, config: CohortConfig
) -> tuple[dict[str, PatientResult], list[Note]]:
    """Every patient's derivation, by patient id, and the notes made on the way (those of the
    mapping stage first). Patients share nothing but the Medication map, replaced-by links and
    their own input problems, so a group of patients closed under the links can be derived on
    its own, given those (the Spark engine does)."""
    for problem in collected.problems:  # a resource of theirs was malformed: their row says so
        record = collected.patients.get(problem.patient or "")
        if record is not None and not problem.warning:
            record.flags.add("input_problem")
    merge_replaced_patients(collected)
    patients: dict[str, PatientResult] = {}
    notes: list[Note] = list(collected.notes)
    for patient_id in sorted(collected.patients):
        evidence = prepare(collected.patients[patient_id], collected.medications)
        patients[patient_id] = derive_patient(evidence, config)
        notes += evidence.notes
    return patients, notes


def cohort_table(included: Iterable[PatientResult]) -> pd.DataFrame:
    """The cohort table of the included patients, in the order given (patient id order)."""
    import pandas as pd  # lazy: loaded while the workers read (collect_parallel)

    rows = [_row(result) for result in included]
    return as_types(pd.DataFrame(rows, columns=[*COLUMNS, *EXTRA_COLUMNS]))


def qc_table(notes: Iterable[Note], problems: list[InputProblem]) -> pd.DataFrame:
    """qc.csv: the notes by patient, rule, source and detail, an order that does not depend on
    how the input was split for reading (worker processes, Spark tasks), then the input
    problems in reading order (file, line)."""
    import pandas as pd

    rows = sorted((note.patient, note.rule, note.source, note.detail) for note in notes)
    rows += [(p.patient or "", _problem_rule(p), p.resource or "", str(p)) for p in problems]
    return pd.DataFrame(rows, columns=list(QC_COLUMNS))


def _problem_rule(problem: InputProblem) -> str:
    return "input_warning" if problem.warning else "input_problem"


def _row(result: PatientResult) -> dict[str, Any]:
    row = dict(result.row)
    row["provenance"] = json.dumps(result.provenance, sort_keys=True)
    return row


def flow_counts(patients: Mapping[str, PatientResult], collected: Collected) -> dict[str, Any]:
    """CONSORT/STROBE counts: how many reached each step, and why the others left there."""
    return flow_of(Counter((result.step, result.reason) for result in patients.values()), collected)


def flow_of(outcomes: Counter[tuple[str, str | None]], collected: Collected) -> dict[str, Any]:
    """`flow_counts` from the number of patients per (step reached, reason for leaving)."""
    steps: list[dict[str, Any]] = []
    remaining = sum(outcomes.values())
    for index, step in enumerate(FLOW_STEPS):
        left = {
            reason: n for (at, reason), n in outcomes.items() if at == step and reason is not None
        }
        steps.append({"step": step, "n": remaining, "left_out": dict(sorted(left.items()))})
        if index + 1 < len(FLOW_STEPS):
            remaining -= sum(left.values())
    included = sum(n for (at, _), n in outcomes.items() if at == "included")
    assert steps[-1]["n"] == included
    errors = [problem for problem in collected.problems if not problem.warning]
    problems = Counter(problem.message.split(" (")[0] for problem in errors)
    return {
        "steps": steps,
        "included": included,
        "excluded": dict(sorted(steps[-2]["left_out"].items())),
        "input": {
            "resources_read": dict(sorted(collected.resources_read.items())),
            "problems": len(errors),
            "warnings": len(collected.problems) - len(errors),
            "problems_by_kind": dict(sorted(problems.items())),
            "skipped": dict(sorted(collected.skipped.items())),
        },
    }
