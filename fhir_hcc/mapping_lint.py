"""Lint of mapping directories: the checks behind `fhir-hcc lint-mappings`.

Reads the TOML files on their own (not through the loader, which stops at the first error) and
returns every finding. The first directory is the base (the shipped `mappings/`): its concept
files need the full format of mappings/README.md. Later directories are site layers: their files
need only `concept` and the rows they add, and may use the systems and classes of the layers
below. Rules, each named in a finding:

- `toml`: the file cannot be read;
- `schema`: missing or unknown keys, undeclared or unused classes, bad status or wildcard;
- `system`: a code's system is not a canonical URI of a `systems.toml`;
- `conflict`: one (system, normalised code) in two classes of a concept, or in two concepts the
  same resource field is read against (for example two Observation.code concepts);
- `verhoeff`, `loinc`, `icdo3`: SNOMED CT, LOINC and ICD-O-3 code form and check digits;
- `display`, `source`: a code row without a display or a source note;
- `regex`: a text pattern that does not compile;
- `url`: an extension or profile URL that is not an absolute http(s) URL.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_hcc.checkdigits import loinc_check_digit_valid, verhoeff_valid
from fhir_hcc.mappings import normalise_code

SYSTEMS_FILE = "systems.toml"
EXTENSIONS_FILE = "extensions.toml"
STATUSES = {"V", "~", "?", "rule"}
TOP_REQUIRED = {"concept", "title", "spec", "read_from", "classes", "codes"}
TOP_OPTIONAL = {"patterns", "units", "unit_notes", "sites", "quantitative"}
CODE_REQUIRED = {"system", "code", "class", "status"}
CODE_NOTES = ("display", "source")  # each missing or empty one is a finding of its own rule
CODE_OPTIONAL = {"note", "positive_threshold", "unit", *CODE_NOTES}
PATTERN_REQUIRED = {"class", "regex"}
PATTERN_OPTIONAL = {"note"}
SYSTEM_REQUIRED = {"name", "canonical", "aliases", "normalise", "check", "status"}
SYSTEM_OPTIONAL = {"note"}
NORMALISERS = {"none", "icd", "icdo3", "upper"}
CHECKS = {"verhoeff", "loinc", ""}
LOINC_ANSWER_PREFIXES = ("LA", "LL", "LP")
ICDO3_MORPHOLOGY = re.compile(r"[0-9]{4}/[0-9]")
URL = re.compile(r"https?://\S+")
# Concepts a mapper reads from the same field: a code in two of them means two things at once.
# The Observation mapper acts on the first concept that matches; the others act on every one.
EXCLUSIVE_GROUPS = {
    "Condition.code": ("hcc", "hepatitis_b", "hepatitis_c", "recurrence", "transplant"),
    "Procedure.code": ("resection", "y90", "transplant"),
    "Observation.code": ("hepatitis_b", "afp", "pathology", "recurrence", "death"),
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem in a mapping file: where, which code (or key), which rule, and what."""

    path: Path
    subject: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.subject}: {self.rule}: {self.message}"


@dataclass(slots=True)
class _Layers:
    """What the directories read so far declare: systems, classes, and coded rows."""

    systems: dict[str, dict[str, Any]] = field(default_factory=dict)  # canonical -> row
    classes: dict[str, set[str]] = field(default_factory=dict)  # concept -> class names
    # concept -> (system, normalised code) -> (code as written, file); a later layer's row
    # replaces it
    codes: dict[str, dict[tuple[str, str], tuple[str, Path]]] = field(default_factory=dict)


def lint_directories(directories: Sequence[str | Path]) -> list[Finding]:
    """Every finding in the layered directories, the first one being the base."""
    layers = _Layers()
    findings: list[Finding] = []
    for position, directory in enumerate(Path(d) for d in directories):
        if not directory.is_dir():
            findings.append(Finding(directory, "directory", "toml", "not a directory"))
            continue
        findings += _lint_directory(directory, layers, base=position == 0)
    findings += _cross_concept_conflicts(layers)
    return findings


def _lint_directory(directory: Path, layers: _Layers, *, base: bool) -> list[Finding]:
    documents: dict[Path, dict[str, Any]] = {}
    findings: list[Finding] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            with path.open("rb") as handle:
                documents[path] = tomllib.load(handle)
        except (OSError, tomllib.TOMLDecodeError) as error:
            findings.append(Finding(path, "file", "toml", str(error)))
    systems_path = directory / SYSTEMS_FILE
    if systems_path in documents:
        findings += _lint_systems(systems_path, documents.pop(systems_path), layers)
    extensions_path = directory / EXTENSIONS_FILE
    if extensions_path in documents:
        findings += _lint_extensions(extensions_path, documents.pop(extensions_path))
    for path, document in documents.items():
        findings += _lint_concept(path, document, layers, base=base)
    return findings


# -- systems.toml and extensions.toml --------------------------------------------------------
def _lint_systems(path: Path, document: dict[str, Any], layers: _Layers) -> Iterator[Finding]:
    seen_uris = {uri for row in layers.systems.values() for uri in _uris(row)}
    for row in document.get("systems", []):
        subject = f"system {row.get('canonical', row.get('name', '?'))}"
        yield from _keys(path, subject, row, SYSTEM_REQUIRED, SYSTEM_OPTIONAL)
        if row.get("normalise", "none") not in NORMALISERS:
            yield Finding(path, subject, "schema", f"normalise {row['normalise']!r} is unknown")
        if row.get("check", "") not in CHECKS:
            yield Finding(path, subject, "schema", f"check {row['check']!r} is unknown")
        if "status" in row and row["status"] not in STATUSES:
            yield Finding(path, subject, "schema", f"status {row['status']!r} is unknown")
        for uri in _uris(row):
            if uri in seen_uris:
                yield Finding(path, subject, "system", f"URI {uri} is declared twice")
            seen_uris.add(uri)
        if isinstance(row.get("canonical"), str):
            layers.systems[row["canonical"]] = row


def _uris(row: dict[str, Any]) -> list[str]:
    return [uri for uri in [row.get("canonical"), *row.get("aliases", [])] if uri]


def _lint_extensions(path: Path, document: dict[str, Any]) -> Iterator[Finding]:
    for table in ("extensions", "profiles"):
        for name, urls in document.get(table, {}).items():
            if not isinstance(urls, list) or not urls:
                yield Finding(path, f"{table}.{name}", "schema", "expected a list of URLs")
                continue
            for url in urls:
                if not isinstance(url, str) or not URL.fullmatch(url):
                    yield Finding(path, f"{table}.{name}", "url", f"{url!r} is not an http(s) URL")


# -- concept files ---------------------------------------------------------------------------
def _lint_concept(
    path: Path, document: dict[str, Any], layers: _Layers, *, base: bool
) -> Iterator[Finding]:
    required = TOP_REQUIRED if base else {"concept"}
    yield from _keys(path, "file", document, required, TOP_REQUIRED | TOP_OPTIONAL)
    concept = document.get("concept", path.stem)
    if concept != path.stem:
        yield Finding(path, "concept", "schema", f"concept {concept!r} differs from the file name")
    classes = document.get("classes", {})
    for name, meaning in classes.items():
        if not isinstance(meaning, str) or not meaning.strip():
            yield Finding(path, f"class {name}", "schema", "a class needs its meaning as text")
    declared = layers.classes.setdefault(concept, set())
    declared |= set(classes)
    used: set[str] = set()
    local: dict[tuple[str, str], str] = {}
    for row in document.get("codes", []):
        used.add(row.get("class", ""))
        yield from _lint_code(path, row, declared, layers)
        yield from _record_code(path, concept, row, layers, local)
    for pattern in document.get("patterns", []):
        used.add(pattern.get("class", ""))
        yield from _lint_pattern(path, pattern, declared)
    if base:
        for name in sorted(set(classes) - used):
            yield Finding(
                path, f"class {name}", "schema", "declared but used by no code or pattern"
            )


def _lint_code(
    path: Path, row: dict[str, Any], declared: set[str], layers: _Layers
) -> Iterator[Finding]:
    code = str(row.get("code", "?"))
    subject = f"code {code}"
    yield from _keys(path, subject, row, CODE_REQUIRED, CODE_OPTIONAL)
    if "class" in row and row["class"] not in declared:
        yield Finding(path, subject, "schema", f"class {row['class']!r} is not declared")
    if "status" in row and row["status"] not in STATUSES:
        yield Finding(path, subject, "schema", f"status {row['status']!r} is unknown")
    if "*" in code.rstrip("*") or code.rstrip("*") == "":
        yield Finding(path, subject, "schema", "a wildcard '*' may only end a prefix code")
    for key in CODE_NOTES:
        if not str(row.get(key, "")).strip():
            yield Finding(path, subject, key, f"no {key}")
    for system in _systems_of(row):
        known = layers.systems.get(system)
        if known is None:
            yield Finding(path, subject, "system", f"{system} is not a canonical URI in systems")
        elif not code.endswith("*"):
            yield from _lint_code_form(path, subject, code, known)


def _lint_code_form(
    path: Path, subject: str, code: str, system: dict[str, Any]
) -> Iterator[Finding]:
    check = system.get("check", "")
    if check == "verhoeff":
        if not (code.isdigit() and 6 <= len(code) <= 18 and code[-3:-1] in {"00", "10"}):
            yield Finding(path, subject, "verhoeff", "not a SNOMED CT concept id")
        elif not verhoeff_valid(code):
            yield Finding(path, subject, "verhoeff", "fails the Verhoeff check digit")
    elif check == "loinc" and not _loinc_exempt(code) and not loinc_check_digit_valid(code):
        yield Finding(path, subject, "loinc", "fails the LOINC mod-10 check digit")
    if system.get("normalise") == "icdo3" and not ICDO3_MORPHOLOGY.fullmatch(code):
        yield Finding(path, subject, "icdo3", "not an ICD-O-3 morphology code NNNN/B")


def _record_code(
    path: Path,
    concept: str,
    row: dict[str, Any],
    layers: _Layers,
    local: dict[tuple[str, str], str],
) -> Iterator[Finding]:
    """Index the row; two classes for one code within one file are a conflict."""
    if "code" not in row or "class" not in row:
        return
    index = layers.codes.setdefault(concept, {})
    for system in _systems_of(row):
        normalise = layers.systems.get(system, {}).get("normalise", "none")
        key = (system, normalise_code(normalise, str(row["code"])))
        earlier = local.setdefault(key, row["class"])
        if earlier != row["class"]:
            yield Finding(
                path,
                f"code {row['code']}",
                "conflict",
                f"{system} is in classes {earlier!r} and {row['class']!r}",
            )
        index[key] = (str(row["code"]), path)  # a site layer's row replaces the base row


def _lint_pattern(path: Path, pattern: dict[str, Any], declared: set[str]) -> Iterator[Finding]:
    regex = pattern.get("regex", "")
    subject = f"pattern {regex!r}"
    yield from _keys(path, subject, pattern, PATTERN_REQUIRED, PATTERN_OPTIONAL)
    if "class" in pattern and pattern["class"] not in declared:
        yield Finding(path, subject, "schema", f"class {pattern['class']!r} is not declared")
    try:
        re.compile(regex)
    except (re.error, TypeError) as error:
        yield Finding(path, subject, "regex", f"does not compile: {error}")


def _cross_concept_conflicts(layers: _Layers) -> Iterator[Finding]:
    for field_name, concepts in EXCLUSIVE_GROUPS.items():
        owner: dict[tuple[str, str], str] = {}
        for concept in concepts:
            for key, (code, path) in layers.codes.get(concept, {}).items():
                other = owner.setdefault(key, concept)
                if other != concept:
                    system = key[0]
                    yield Finding(
                        path,
                        f"code {code}",
                        "conflict",
                        f"{system} is in concept {other!r} too; {field_name} reads both",
                    )


# -- helpers ---------------------------------------------------------------------------------
def _keys(
    path: Path, subject: str, row: dict[str, Any], required: set[str], optional: set[str]
) -> Iterator[Finding]:
    missing = sorted(required - row.keys())
    if missing:
        yield Finding(path, subject, "schema", f"missing {', '.join(missing)}")
    unknown = sorted(row.keys() - required - optional)
    if unknown:
        yield Finding(path, subject, "schema", f"unknown key {', '.join(unknown)}")


def _loinc_exempt(code: str) -> bool:
    """Answer, list and part codes (LA..., LL..., LP...) carry no mod-10 check digit."""
    return code.upper().startswith(LOINC_ANSWER_PREFIXES)


def _systems_of(row: dict[str, Any]) -> list[str]:
    system = row.get("system")
    if isinstance(system, str):
        return [system]
    return [s for s in system if isinstance(s, str)] if isinstance(system, list) else []
