"""Case lists: the starting population of a pull, given by the user instead of found by code.

- `--patients FILE`: FHIR Patient logical ids, one a line (blank lines and `#` comments
  ignored), or a CSV with an `id` or `patient_id` column;
- `--identifiers FILE`: MRNs or other identifiers, one `system|value` a line, or bare values
  with `--identifier-system URI`, or a CSV with an `mrn` or `identifier` column (and optionally a
  `system` column);
- `--group ID`: the members of a Group on the server.

A bad line (an id FHIR cannot carry, a value without a system) is skipped and reported by its
line number; a repeated line is used once and reported. Identifier values are personal data:
messages name their line, never the value.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fhir_hcc.errors import ConfigError, InputError
from fhir_hcc.fhir.references import parse_reference

log = logging.getLogger(__name__)

Kind = Literal["patients", "identifiers", "group"]
PATIENT_COLUMNS = ("id", "patient_id")
IDENTIFIER_COLUMNS = ("mrn", "identifier")


@dataclass(frozen=True)
class Entry:
    line: int  # in the file
    value: str  # a Patient id, or an identifier value
    system: str | None = None  # identifiers: the identifier system


@dataclass(frozen=True)
class Population:
    """What the user named as the starting population (a file's entries, or a Group id)."""

    kind: Kind
    entries: tuple[Entry, ...] = ()
    path: Path | None = None
    group: str | None = None
    bad: tuple[tuple[int, str], ...] = ()  # (line, why), skipped
    repeats: tuple[tuple[int, int], ...] = ()  # (line, the earlier line it repeats)

    @property
    def label(self) -> str:
        if self.kind == "group":
            return f"Group/{self.group}"
        return f"--{self.kind} {self.path}"

    def record(self) -> dict[str, object]:
        """For the manifest: where the list came from and its lines (no values)."""
        record: dict[str, object] = {"kind": self.kind, "entries": len(self.entries)}
        if self.path is not None:
            record["file"] = self.path.name
        if self.group is not None:
            record["group"] = self.group
        record["badLines"] = [line for line, _ in self.bad]
        record["repeatedLines"] = [line for line, _ in self.repeats]
        return record


@dataclass
class _Collected:
    entries: list[Entry] = field(default_factory=list)
    bad: list[tuple[int, str]] = field(default_factory=list)
    repeats: list[tuple[int, int]] = field(default_factory=list)
    first_line: dict[tuple[str | None, str], int] = field(default_factory=dict)

    def add(self, entry: Entry) -> None:
        key = (entry.system, entry.value)
        if key in self.first_line:
            self.repeats.append((entry.line, self.first_line[key]))
            return
        self.first_line[key] = entry.line
        self.entries.append(entry)


def read_patients(path: Path) -> Population:
    """Patient logical ids, one a line, or a CSV with an `id` or `patient_id` column."""
    found = _Collected()
    for line, value, _ in _values(path, PATIENT_COLUMNS, "id or patient_id"):
        if parse_reference(f"Patient/{value}") is None:
            found.bad.append((line, "not a FHIR resource id"))
        else:
            found.add(Entry(line, value))
    return _population("patients", path, found)


def read_identifiers(path: Path, system: str | None = None) -> Population:
    """`system|value` a line (or bare values with `system`), or a CSV with an `mrn` or
    `identifier` column and, optionally, a `system` column."""
    found = _Collected()
    for line, text, column_system in _values(path, IDENTIFIER_COLUMNS, "mrn or identifier"):
        entry_system, value = _split_identifier(text, column_system or system)
        if entry_system is None:
            found.bad.append((line, "no identifier system (write system|value, or give "
                                    "--identifier-system)"))  # fmt: skip
        elif not value:
            found.bad.append((line, "no identifier value"))
        else:
            found.add(Entry(line, value, entry_system))
    return _population("identifiers", path, found)


def group(group_id: str) -> Population:
    if parse_reference(f"Group/{group_id}") is None:
        raise ConfigError(f"--group {group_id!r} is not a FHIR resource id")
    return Population("group", group=group_id)


def _split_identifier(text: str, system: str | None) -> tuple[str | None, str]:
    """A token `system|value` (a `|` in the value itself is kept, as FHIR escapes it `\\|`)."""
    if "|" in text.replace("\\|", ""):
        position = next(
            i for i, c in enumerate(text) if c == "|" and (i == 0 or text[i - 1] != "\\")
        )
        named, value = text[:position].strip(), text[position + 1 :].strip()
        return named or system, value.replace("\\|", "|")
    return system, text.replace("\\|", "|")


def _population(kind: Kind, path: Path, found: _Collected) -> Population:
    for line, why in found.bad:
        log.warning("%s:%d: skipped: %s", path, line, why)
    for line, earlier in found.repeats:
        log.warning("%s:%d: repeats line %d; used once", path, line, earlier)
    if not found.entries:
        raise InputError(f"{path}: no usable {kind} in the file")
    return Population(
        kind, tuple(found.entries), path, None, tuple(found.bad), tuple(found.repeats)
    )


def _values(path: Path, columns: tuple[str, ...], wanted: str) -> list[tuple[int, str, str | None]]:
    """(line, value, system column) of every entry: a CSV by its header, else one a line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the list: {error}") from None
    if path.suffix.lower() == ".csv":
        return _csv_values(path, text, columns, wanted)
    values: list[tuple[int, str, str | None]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            values.append((number, line, None))
    return values


def _csv_values(
    path: Path, text: str, columns: tuple[str, ...], wanted: str
) -> list[tuple[int, str, str | None]]:
    reader = csv.DictReader(io.StringIO(text))
    names = {name.strip().lower(): name for name in reader.fieldnames or []}
    column = next((names[c] for c in columns if c in names), None)
    if column is None:
        raise InputError(f"{path}:1: the CSV header has no {wanted} column")
    system_column = names.get("system")
    values = []
    for row in reader:
        value = (row.get(column) or "").strip()
        if value:
            system = (row.get(system_column) or "").strip() if system_column else ""
            values.append((reader.line_num, value, system or None))
    return values
