"""Mapping test cases: FHIR resources and the cohort they must give, compared field by field.

A case is one YAML or JSON file (format: docs/validation.md): a title, the rule it shows, optional
`[cohort]` overrides, FHIR resources inline, from a file (`source:`) or as raw text (`files:`),
optionally layered over a shared `base:` patient, and `expect:` (cohort rows, exclusions, QC
rules, input problems, flow counts, the strict-mode error). `run_case` builds the cohort through
the public API and returns every difference, each naming the source resources behind the wrong
value.
"""

from __future__ import annotations

import gzip
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import yaml

from fhir_hcc.cohort import COLUMNS, EXTRA_COLUMNS, CohortResult, build_cohort
from fhir_hcc.config import CohortConfig, config_from_dict
from fhir_hcc.errors import ConfigError, FhirHccError, InputError
from fhir_hcc.mappings import Mappings, load_mappings
from fhir_hcc.sources import FileSource, ProblemSink, Source

CASE_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_CASES = Path("fixtures") / "edge-cases"
CASE_KEYS = (
    "title", "rule", "description", "base", "config", "resources", "remove", "source", "files",
    "invalid_fhir", "xfail", "expect",
)  # fmt: skip
EXPECT_KEYS = ("rows", "excluded", "absent", "qc", "qc_absent", "problems", "flow", "strict_error")
QC_KEYS = ("rule", "source", "detail")
PROBLEM_KEYS = ("count", "messages")
ROW_COLUMNS = frozenset((*COLUMNS, *EXTRA_COLUMNS))
RAW_SUFFIXES = (".json", ".ndjson")  # raw `files:` the file source reads as written


class CaseError(FhirHccError):
    """A case file that cannot be used: names the file and the bad key."""


# -- the case model -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QcExpectation:
    """A QC record the cohort must contain: its rule, and optionally its source and detail."""

    rule: str
    source: str | None = None  # "Type/id", exact
    detail: str | None = None  # substring

    def matches(self, rule: str, source: str, detail: str) -> bool:
        return (
            rule == self.rule
            and (self.source is None or source == self.source)
            and (self.detail is None or self.detail in detail)
        )

    def __str__(self) -> str:
        parts = [self.rule]
        if self.source:
            parts.append(f"from {self.source}")
        if self.detail:
            parts.append(f"detail containing {self.detail!r}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Expectations:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    excluded: dict[str, str] = field(default_factory=dict)  # patient -> reason substring
    absent: tuple[str, ...] = ()  # patients that must not appear at all (merged away)
    qc: dict[str, tuple[QcExpectation, ...]] = field(default_factory=dict)
    qc_absent: dict[str, tuple[str, ...]] = field(default_factory=dict)
    problem_count: int | None = None
    problem_messages: tuple[str, ...] = ()
    flow: dict[str, Any] = field(default_factory=dict)  # a subset of CohortResult.flow
    strict_error: tuple[str, ...] = ()  # substrings of the strict-mode InputError


@dataclass(frozen=True, slots=True)
class Case:
    path: Path
    title: str
    rule: str
    expect: Expectations
    resources: tuple[dict[str, Any], ...] = ()  # inline, after merging the base
    files: dict[str, str] = field(default_factory=dict)  # raw input: file name -> text
    source: Path | None = None
    config: CohortConfig = field(default_factory=CohortConfig)
    invalid_fhir: dict[str, str] = field(default_factory=dict)  # "Type/id" -> why
    xfail: str | None = None


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One expectation the cohort did not meet, with the resources behind the actual value."""

    subject: str  # "p1.hbv_status", "p1", "p1 qc", "problems", "flow.included", "strict"
    expected: Any
    actual: Any
    sources: tuple[str, ...] = ()
    patient: str | None = None  # whose derivation explains it

    def __str__(self) -> str:
        text = f"{self.subject}: expected {_show(self.expected)}, got {_show(self.actual)}"
        if self.sources:
            return f"{text}  <- {', '.join(self.sources)}"
        return text


@dataclass(slots=True)
class CaseResult:
    path: Path
    title: str = ""
    xfail: str | None = None
    mismatches: list[Mismatch] = field(default_factory=list)
    # Patient -> derivation steps and QC notes, printed under a failing patient's mismatches.
    context: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None  # the case file could not be used

    @property
    def outcome(self) -> str:
        """pass, fail, xfail (fails as its `xfail:` mark says), xpass (marked but passes), error."""
        if self.error is not None:
            return "error"
        if self.xfail:
            return "xfail" if self.mismatches else "xpass"
        return "fail" if self.mismatches else "pass"

    @property
    def ok(self) -> bool:
        return self.outcome in ("pass", "xfail")


# -- finding and loading cases ------------------------------------------------------------------


def find_cases(paths: Sequence[str | Path]) -> list[Path]:
    """Case files named directly, or found under directories; `_`-prefixed parts (bases, data)
    are not cases."""
    found: list[Path] = []
    for spec in paths:
        path = Path(spec)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(
                candidate
                for candidate in path.rglob("*")
                if candidate.is_file()
                and candidate.suffix in CASE_SUFFIXES
                and not any(part.startswith("_") for part in candidate.relative_to(path).parts)
            )
        else:
            raise CaseError(f"{path}: no such case file or directory")
    if not found:
        raise CaseError(f"no case files in {', '.join(str(p) for p in paths)}")
    return found


def load_case(path: str | Path) -> Case:
    """Read and check one case file; a bad one raises CaseError naming the file and key."""
    path = Path(path)
    data = _read_document(path)
    _check_keys(data, CASE_KEYS, path, "")
    resources = _merged_resources(path, data, (path.resolve(),))
    return Case(
        path=path,
        title=_text(data, "title", path, required=True) or "",
        rule=_text(data, "rule", path) or "",
        expect=_expectations(data.get("expect"), path),
        resources=tuple(resources),
        files=_raw_files(data.get("files", {}), path),
        source=_source_path(data.get("source"), path),
        config=_config(data.get("config", {}), path),
        invalid_fhir=_invalid_fhir(data.get("invalid_fhir", {}), resources, path),
        xfail=_text(data, "xfail", path),
    )


# libyaml's parser when PyYAML was built with it (10x faster); the resolver stays Python's.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CaseLoader(_SafeLoader):  # type: ignore[misc, valid-type]
    """YAML with dates kept as written (a FHIR date's spelling is its precision) and only
    true/false as booleans (so `death: no` stays the cohort value "no")."""


_TIMESTAMP, _BOOL = "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool"
_CaseLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag not in (_TIMESTAMP, _BOOL)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_CaseLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _read_document(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes()
    except OSError as error:
        raise CaseError(f"{path}: cannot read case file: {error.strerror}") from None
    try:
        data = orjson.loads(text) if path.suffix == ".json" else yaml.load(text, _CaseLoader)
    except orjson.JSONDecodeError as error:
        raise CaseError(f"{path}: not valid JSON: {error.msg} (line {error.lineno})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or "syntax error"
        raise CaseError(f"{path}: not valid YAML: {problem}{where}") from None
    if not isinstance(data, dict):
        raise CaseError(f"{path}: a case file holds one mapping (title, expect, ...)")
    return data


def _check_keys(data: dict[str, Any], allowed: Sequence[str], path: Path, where: str) -> None:
    for key in data:
        if key not in allowed:
            raise CaseError(
                f"{path}: {where}{key}: unknown key (expected one of {', '.join(allowed)})"
            )


def _text(data: dict[str, Any], key: str, path: Path, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CaseError(f"{path}: {key}: expected a non-empty text")
    return value


def _reference(resource: dict[str, Any]) -> str:
    return f"{resource.get('resourceType', '?')}/{resource.get('id', '?')}"


def _merged_resources(
    path: Path, data: dict[str, Any], seen: tuple[Path, ...]
) -> list[dict[str, Any]]:
    """The base's resources (recursively), minus `remove`, with same-type/id ones replaced."""
    resources: list[dict[str, Any]] = []
    base = data.get("base")
    if base is not None:
        base_path = path.parent / str(base)
        if not base_path.is_file():
            raise CaseError(f"{path}: base: {base} not found")
        if base_path.resolve() in seen:
            raise CaseError(f"{path}: base: {base} refers back to itself")
        base_data = _read_document(base_path)
        _check_keys(base_data, CASE_KEYS, base_path, "")
        resources = _merged_resources(base_path, base_data, (*seen, base_path.resolve()))
    removed = _reference_list(data.get("remove", []), path, "remove")
    present = {_reference(resource) for resource in resources}
    for reference in removed:
        if reference not in present:
            raise CaseError(f"{path}: remove: {reference} is not a resource of the base")
    resources = [resource for resource in resources if _reference(resource) not in removed]
    for resource in _resource_list(data.get("resources", []), path):
        reference = _reference(resource)
        position = next(
            (i for i, old in enumerate(resources) if "id" in old and _reference(old) == reference),
            None,
        )
        if position is None or "id" not in resource:
            resources.append(resource)
        else:
            resources[position] = resource
    return resources


def _resource_list(value: Any, path: Path) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise CaseError(f"{path}: resources: expected a list of FHIR resources")
    for index, resource in enumerate(value, start=1):
        if not isinstance(resource, dict):
            raise CaseError(f"{path}: resources[{index}]: expected a FHIR resource (a mapping)")
    return value


def _reference_list(value: Any, path: Path, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CaseError(f"{path}: {key}: expected a list of Type/id references")
    return value


def _raw_files(value: Any, path: Path) -> dict[str, str]:
    if not isinstance(value, dict):
        raise CaseError(f"{path}: files: expected a mapping of file name to text")
    for name, text in value.items():
        where = f"{path}: files: {name}"
        if not isinstance(text, str):
            raise CaseError(f"{where}: expected the file's text")
        if Path(name).name != name or "\\" in name:
            raise CaseError(f"{where}: expected a plain file name")
        if not name.endswith(RAW_SUFFIXES):
            raise CaseError(f"{where}: the file source reads only {', '.join(RAW_SUFFIXES)}")
    return dict(value)


def _source_path(value: Any, path: Path) -> Path | None:
    if value is None:
        return None
    source = path.parent / str(value)
    if not source.exists():
        raise CaseError(f"{path}: source: {value} not found")
    return source


def _config(value: Any, path: Path) -> CohortConfig:
    if not isinstance(value, dict):
        raise CaseError(f"{path}: config: expected a mapping of [cohort] settings")
    try:
        config = config_from_dict(value, source=f"{path}: config")
    except ConfigError as error:
        raise CaseError(str(error)) from None
    # Site mapping directories are relative to the case file, as in a study TOML file.
    return replace(config, mappings=tuple(str(path.parent / p) for p in config.mappings))


def _invalid_fhir(value: Any, resources: list[dict[str, Any]], path: Path) -> dict[str, str]:
    if not isinstance(value, dict):
        raise CaseError(f"{path}: invalid_fhir: expected a mapping of Type/id to the reason")
    present = {_reference(resource) for resource in resources}
    for reference, reason in value.items():
        if reference not in present:
            raise CaseError(f"{path}: invalid_fhir: {reference} is not a resource of this case")
        if not isinstance(reason, str) or not reason:
            raise CaseError(f"{path}: invalid_fhir: {reference}: give the reason as text")
    return dict(value)


# -- expectations -------------------------------------------------------------------------------


def _expectations(value: Any, path: Path) -> Expectations:
    if not isinstance(value, dict) or not value:
        raise CaseError(f"{path}: expect: required, and must state something to check")
    _check_keys(value, EXPECT_KEYS, path, "expect.")
    problems = _mapping(value.get("problems", {}), path, "expect.problems")
    _check_keys(problems, PROBLEM_KEYS, path, "expect.problems.")
    count = problems.get("count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
        raise CaseError(f"{path}: expect.problems.count: expected a whole number >= 0")
    return Expectations(
        rows=_rows(value.get("rows", {}), path),
        excluded={
            patient: "" if reason is None else str(reason)
            for patient, reason in _by_patient(value.get("excluded", {}), path, "excluded").items()
        },
        absent=tuple(str(p) for p in _list(value.get("absent", []), path, "expect.absent")),
        qc={
            patient: tuple(_qc_item(item, path, f"expect.qc.{patient}") for item in items)
            for patient, items in _lists_by_patient(value.get("qc", {}), path, "qc").items()
        },
        qc_absent={
            patient: tuple(str(rule) for rule in rules)
            for patient, rules in _lists_by_patient(
                value.get("qc_absent", {}), path, "qc_absent"
            ).items()
        },
        problem_count=count,
        problem_messages=tuple(
            str(m) for m in _list(problems.get("messages", []), path, "expect.problems.messages")
        ),
        flow=_mapping(value.get("flow", {}), path, "expect.flow"),
        strict_error=_strings(value.get("strict_error", []), path, "expect.strict_error"),
    )


def _mapping(value: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CaseError(f"{path}: {where}: expected a mapping")
    return value


def _list(value: Any, path: Path, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise CaseError(f"{path}: {where}: expected a list")
    return value


def _strings(value: Any, path: Path, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else _list(value, path, where)
    if not all(isinstance(item, str) and item for item in items):
        raise CaseError(f"{path}: {where}: expected texts")
    return tuple(items)


def _by_patient(value: Any, path: Path, key: str) -> dict[str, Any]:
    """A mapping keyed by patient id (ids that YAML reads as numbers become text)."""
    return {str(patient): item for patient, item in _mapping(value, path, f"expect.{key}").items()}


def _lists_by_patient(value: Any, path: Path, key: str) -> dict[str, list[Any]]:
    return {
        patient: _list(items, path, f"expect.{key}.{patient}")
        for patient, items in _by_patient(value, path, key).items()
    }


def _rows(value: Any, path: Path) -> dict[str, dict[str, Any]]:
    rows = {}
    for patient, columns in _by_patient(value, path, "rows").items():
        where = f"expect.rows.{patient}"
        for column in _mapping(columns, path, where):
            if column not in ROW_COLUMNS:
                raise CaseError(f"{path}: {where}.{column}: not a cohort column")
        rows[patient] = columns
    return rows


def _qc_item(item: Any, path: Path, where: str) -> QcExpectation:
    if isinstance(item, str):
        return QcExpectation(item)
    mapping = _mapping(item, path, where)
    _check_keys(mapping, QC_KEYS, path, f"{where}.")
    if not isinstance(mapping.get("rule"), str):
        raise CaseError(f"{path}: {where}: a QC expectation needs a rule")
    return QcExpectation(mapping["rule"], mapping.get("source"), mapping.get("detail"))


# -- running a case -----------------------------------------------------------------------------


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
        except Exception as error:  # a crash is this case's failure, not the whole run's
            outcome.mismatches = [Mismatch("run", "a cohort", _one_line(error, root))]
            return outcome
    failing = {m.patient for m in outcome.mismatches if m.patient in result.patients}
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


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + "; ".join(str(item) for item in value) + "]"
    return repr(value) if isinstance(value, str | None) else str(value)


# -- reporting ----------------------------------------------------------------------------------

_LABELS = {
    "pass": "PASS",
    "fail": "FAIL",
    "xfail": "XFAIL",
    "xpass": "XPASS",
    "error": "ERROR",
}


def format_result(result: CaseResult) -> str:
    """One line per case; a failure adds its field-by-field diff and each failing patient's
    derivation."""
    label = _LABELS[result.outcome]
    if result.outcome == "error":
        return f"{label:<6} {result.error}"
    lines = [f"{label:<6} {result.path}  {result.title}"]
    if result.outcome == "xfail":
        lines.append(f"       known discrepancy: {result.xfail}")
    if result.outcome == "xpass":
        lines.append(f"       passes although marked xfail ({result.xfail}): remove the mark")
    if result.outcome in ("fail", "xfail"):
        lines += [f"       - {mismatch}" for mismatch in result.mismatches]
        for patient, context in sorted(result.context.items()):
            lines.append(f"       how {patient} was derived:")
            lines += [f"         {line}" for line in context]
    return "\n".join(lines)


def summary(results: Sequence[CaseResult]) -> str:
    counts = {outcome: 0 for outcome in _LABELS}
    for result in results:
        counts[result.outcome] += 1
    return (
        f"{len(results)} case(s): {counts['pass']} passed, {counts['fail']} failed, "
        f"{counts['xfail']} expected failure(s), {counts['xpass']} unexpectedly passed, "
        f"{counts['error']} unusable"
    )


def valid_fhir_resources(case: Case) -> list[tuple[str, dict[str, Any]]]:
    """(label, resource) for every resource of a case meant to be valid FHIR R4: the inline ones
    not listed under `invalid_fhir`, and each document of the `source` files. Raw `files:` are
    deliberately broken input and are not listed."""
    found = [
        (f"{case.path}: {_reference(resource)}", resource)
        for resource in case.resources
        if _reference(resource) not in case.invalid_fhir
    ]
    if case.source is not None:
        for path in FileSource(case.source).files():
            found += _documents(path)
    return found


def marked_invalid_resources(case: Case) -> list[tuple[str, dict[str, Any]]]:
    """(label, resource) for the inline resources a case marks `invalid_fhir`."""
    return [
        (f"{case.path}: {_reference(resource)}", resource)
        for resource in case.resources
        if _reference(resource) in case.invalid_fhir
    ]


def _documents(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        if path.suffix == ".json":
            return [(str(path), orjson.loads(path.read_bytes()))]
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            lines = handle.read().splitlines()
        return [
            (f"{path}:{number}", orjson.loads(line))
            for number, line in enumerate(lines, start=1)
            if line.strip()
        ]
    except (OSError, orjson.JSONDecodeError) as error:
        raise CaseError(f"{path}: source file is not FHIR JSON: {error}") from None
