"""Finding case files and reading them into `Case`s; a bad file raises CaseError naming the key."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import yaml

from fhir_hcc.config import CohortConfig, config_from_dict
from fhir_hcc.contract import COLUMNS, EXTRA_COLUMNS
from fhir_hcc.errors import ConfigError
from fhir_hcc.validate.model import Case, CaseError, Expectations, QcExpectation, reference_of

# The project's own cases, shipped in the package (fhir_hcc/shipped_cases links to the
# repository's fixtures/edge-cases, as shipped_mappings does to mappings/).
SHIPPED_CASES = (Path(__file__).parent.parent / "shipped_cases").resolve()
CASE_SUFFIXES = (".yaml", ".yml", ".json")
CASE_KEYS = (
    "title", "rule", "description", "base", "config", "resources", "remove", "source", "files",
    "invalid_fhir", "xfail", "expect",
)  # fmt: skip
EXPECT_KEYS = ("rows", "excluded", "absent", "qc", "qc_absent", "problems", "flow", "strict_error")
QC_KEYS = ("rule", "source", "detail")
PROBLEM_KEYS = ("count", "messages")
ROW_COLUMNS = frozenset((*COLUMNS, *EXTRA_COLUMNS))
RAW_SUFFIXES = (".json", ".ndjson")  # raw `files:` the file source reads as written


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
    present = {reference_of(resource) for resource in resources}
    for reference in removed:
        if reference not in present:
            raise CaseError(f"{path}: remove: {reference} is not a resource of the base")
    resources = [resource for resource in resources if reference_of(resource) not in removed]
    for resource in _resource_list(data.get("resources", []), path):
        reference = reference_of(resource)
        position = next(
            (
                i
                for i, old in enumerate(resources)
                if "id" in old and reference_of(old) == reference
            ),
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
    present = {reference_of(resource) for resource in resources}
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
