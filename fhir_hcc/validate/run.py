"""Running a case: build its cohort through the public API and compare it with the expectations."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from fhir_hcc.cohort import CohortResult, build_cohort
from fhir_hcc.errors import FhirHccError, InputError, MissingExtraError
from fhir_hcc.mappings import Mappings, load_mappings
from fhir_hcc.sources import FileSource, ProblemSink, Source
from fhir_hcc.validate.load import find_cases, load_case
from fhir_hcc.validate.model import Case, CaseResult, Expectations, Mismatch


@lru_cache(maxsize=8)
def _mappings(directories: tuple[str, ...]) -> Mappings:
    return load_mappings(directories)


@dataclass(frozen=True, slots=True)
class _Chain:
    """Several sources read one after the other."""

    sources: tuple[Source, ...]

    def read(self, report: ProblemSink) -> Iterator[Any]:
        for source in self.sources:
            yield from source.read(report)


def run_case(case: Case, mappings: Sequence[str | Path] = ()) -> CaseResult:
    """Build the case's cohort (with site mapping directories layered over the shipped ones)
    and compare it with the case's expectations."""
    outcome = CaseResult(case.path, case.title, case.xfail)
    loaded = _mappings(tuple(str(p) for p in (*case.config.mappings, *mappings)))
    with tempfile.TemporaryDirectory(prefix="fhir-hcc-case-") as temporary:
        root = Path(temporary)
        try:
            source = _write_inputs(case, root)
            result = build_cohort(source, case.config, mappings=loaded)
            outcome.mismatches = list(_compare(case.expect, result, root))
            if case.expect.strict_error:
                outcome.mismatches += _compare_strict(case, source, loaded, root)
        except MissingExtraError as error:  # the strict build validates with fhir.resources
            outcome.skipped = str(error)
        except Exception as error:  # a crash is this case's failure, not the whole run's
            outcome.mismatches = [Mismatch("run", "a cohort", _one_line(error, root))]
            return outcome
    failing = {m.patient for m in outcome.mismatches if m.patient and m.patient in result.patients}
    outcome.context = {patient: _patient_context(result, patient) for patient in failing}
    return outcome


def validate_paths(
    paths: Sequence[str | Path], mappings: Sequence[str | Path] = ()
) -> list[CaseResult]:
    """Run every case found under `paths`; a case file that cannot be used is an `error`.
    Missing cases or an unusable site mapping directory raise before any case runs."""
    cases = find_cases(paths)
    _mappings(tuple(str(p) for p in mappings))
    results = []
    for path in cases:
        try:
            results.append(run_case(load_case(path), mappings))
        except FhirHccError as error:  # the case file, or a mapping directory it names
            results.append(CaseResult(path, error=str(error)))
    return results


def _write_inputs(case: Case, root: Path) -> Source:
    """Inline resources, one JSON file each (so a problem's location names the resource), and
    the raw files, in a temporary directory read by the ordinary file source."""
    inline = root / "resources"
    inline.mkdir()
    for index, resource in enumerate(case.resources, start=1):
        name = f"{index:03d}-{resource.get('resourceType', 'unknown')}"
        if isinstance(resource.get("id"), str):
            name += f"-{resource['id']}"
        (inline / f"{re.sub(r'[^A-Za-z0-9.-]', '_', name)}.json").write_bytes(
            orjson.dumps(resource)
        )
    for name, text in case.files.items():
        (root / name).write_text(text, encoding="utf-8")
    sources: tuple[Source, ...] = (FileSource(root),)
    if case.source is not None:
        sources = (FileSource(case.source), *sources)
    return _Chain(sources)


def _relative(text: str, root: Path) -> str:
    """A message with the temporary input directory left out of its file names."""
    return text.replace(f"{root}{os.sep}", "")


def _one_line(error: BaseException, root: Path) -> str:
    text = str(error) if isinstance(error, FhirHccError) else f"{type(error).__name__}: {error}"
    return _relative(text, root)


def _compare(expect: Expectations, result: CohortResult, root: Path) -> Iterator[Mismatch]:
    yield from _compare_rows(expect, result)
    yield from _compare_exclusions(expect, result)
    yield from _compare_qc(expect, result)
    yield from _compare_problems(expect, result, root)
    yield from _compare_subset(expect.flow, result.flow, "flow")


def _compare_rows(expect: Expectations, result: CohortResult) -> Iterator[Mismatch]:
    table = result.table.set_index("patient_id", drop=False)
    for patient_id, columns in expect.rows.items():
        patient = result.patients.get(patient_id)
        if patient is None or not patient.included:
            yield Mismatch(patient_id, "a cohort row", _fate(result, patient_id), (), patient_id)
            continue
        row = table.loc[patient_id]
        for column, wanted in columns.items():
            actual = _plain(row[column])
            if not _same(wanted, actual):
                sources = tuple(patient.provenance.get(column, ()))
                yield Mismatch(f"{patient_id}.{column}", wanted, actual, sources, patient_id)


def _compare_exclusions(expect: Expectations, result: CohortResult) -> Iterator[Mismatch]:
    for patient_id, reason in expect.excluded.items():
        patient = result.patients.get(patient_id)
        wanted = f"excluded, reason containing {reason!r}" if reason else "excluded"
        if patient is None or patient.included or reason not in (patient.reason or ""):
            yield Mismatch(patient_id, wanted, _fate(result, patient_id), (), patient_id)
    for patient_id in expect.absent:
        if patient_id in result.patients:
            fate = _fate(result, patient_id)
            yield Mismatch(patient_id, "no patient record (merged away)", fate, (), patient_id)


def _fate(result: CohortResult, patient_id: str) -> str:
    patient = result.patients.get(patient_id)
    if patient is None:
        return "no resources for this patient"
    if patient.included:
        return "included"
    return f"excluded at '{patient.step}': {patient.reason}"


def _qc_records(result: CohortResult, patient_id: str) -> list[tuple[str, str, str]]:
    """(rule, source, detail) of a patient's QC records."""
    notes = result.qc[result.qc["patient_id"] == patient_id]
    return list(zip(notes["rule"], notes["source"], notes["detail"], strict=True))


def _compare_qc(expect: Expectations, result: CohortResult) -> Iterator[Mismatch]:
    for patient_id, wanted in expect.qc.items():
        found = _qc_records(result, patient_id)
        seen = sorted({f"{rule} ({source})" for rule, source, _ in found}) or "no QC records"
        for item in wanted:
            if not any(item.matches(*record) for record in found):
                yield Mismatch(f"{patient_id} qc", str(item), seen, (), patient_id)
    for patient_id, rules in expect.qc_absent.items():
        for rule, source, detail in _qc_records(result, patient_id):
            if rule in rules:
                yield Mismatch(
                    f"{patient_id} qc", f"no {rule}", f"{rule}: {detail}", (source,), patient_id
                )


def _compare_problems(expect: Expectations, result: CohortResult, root: Path) -> Iterator[Mismatch]:
    shown = [_relative(str(problem), root) for problem in result.problems]
    if expect.problem_count is not None and len(shown) != expect.problem_count:
        yield Mismatch("problems", f"{expect.problem_count} input problem(s)", shown or "none")
    for text in expect.problem_messages:
        if not any(text in problem for problem in shown):
            yield Mismatch("problems", f"a problem containing {text!r}", shown or "none")


def _compare_subset(wanted: Any, actual: Any, subject: str) -> Iterator[Mismatch]:
    """Every key the case names must be there with the same value; other keys are ignored."""
    if isinstance(wanted, dict) and isinstance(actual, dict):
        for key, value in wanted.items():
            if key in actual:
                yield from _compare_subset(value, actual[key], f"{subject}.{key}")
            else:
                yield Mismatch(f"{subject}.{key}", value, "missing")
    elif not _same(wanted, actual):
        yield Mismatch(subject, wanted, actual)


def _compare_strict(case: Case, source: Source, mappings: Mappings, root: Path) -> list[Mismatch]:
    wanted = f"a one-line InputError containing {', '.join(map(repr, case.expect.strict_error))}"
    try:
        build_cohort(source, case.config, strict=True, mappings=mappings)
    except InputError as error:
        message = _one_line(error, root)
        if "\n" in message or not all(text in message for text in case.expect.strict_error):
            return [Mismatch("strict", wanted, message)]
        return []
    return [Mismatch("strict", wanted, "no error")]


def _plain(value: Any) -> Any:
    """A table cell as a plain Python value: missing -> None, numpy scalars -> int / float."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):  # case files write dates as YYYY-MM-DD text
        return value.date().isoformat()
    return value.item() if hasattr(value, "item") else value


def _same(wanted: Any, actual: Any) -> bool:
    """Equal, with a float compared to the precision it is written with (41.9 matches 41.92)."""
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return wanted is actual
    if isinstance(wanted, float) and isinstance(actual, int | float):
        exponent = Decimal(repr(wanted)).as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        return round(actual, places) == wanted
    if isinstance(wanted, int) and isinstance(actual, int | float):
        return actual == wanted
    return wanted == actual


def _patient_context(result: CohortResult, patient_id: str) -> list[str]:
    patient = result.patients[patient_id]
    steps = [f"step: {step}" for step in patient.trail]
    notes = [
        f"qc: {rule} {source} {detail}" for rule, source, detail in _qc_records(result, patient_id)
    ]
    return steps + notes
