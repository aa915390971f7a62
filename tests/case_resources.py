"""The FHIR resources of a mapping test case, for the tests that check them against R4B."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from fhir_hcc.fhir.ndjson import read_lines
from fhir_hcc.sources import FileSource
from fhir_hcc.validate import Case
from fhir_hcc.validate.model import reference_of


def valid_fhir_resources(case: Case) -> list[tuple[str, dict[str, Any]]]:
    """(label, resource) for every resource of a case meant to be valid FHIR R4: the inline ones
    not listed under `invalid_fhir`, and each document of the `source` files. Raw `files:` are
    deliberately broken input and are not listed."""
    found = [
        (f"{case.path}: {reference_of(resource)}", resource)
        for resource in case.resources
        if reference_of(resource) not in case.invalid_fhir
    ]
    if case.source is not None:
        for path in FileSource(case.source).files():
            found += _documents(path)
    return found


def marked_invalid_resources(case: Case) -> list[tuple[str, dict[str, Any]]]:
    """(label, resource) for the inline resources a case marks `invalid_fhir`."""
    return [
        (f"{case.path}: {reference_of(resource)}", resource)
        for resource in case.resources
        if reference_of(resource) in case.invalid_fhir
    ]


def _documents(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """A source file's documents; a case's source data is valid JSON, so errors just fail."""
    if path.suffix == ".json":
        return [(str(path), orjson.loads(path.read_bytes()))]
    return [(f"{path}:{number}", orjson.loads(line)) for number, line in read_lines(path)]
