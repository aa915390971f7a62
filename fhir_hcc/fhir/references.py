"""FHIR references: the one parser for `Type/id`, absolute URLs and `_history` versions.

Contained (`#id`) and `urn:uuid:` references are not parsed here: the Bundle reader rewrites the
second to `Type/id`, and the mappers read contained resources in place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from fhir_hcc.fhir.types import RESOURCE_TYPES


class Reference(NamedTuple):
    type: str
    id: str
    base: str = (
        ""  # the service base of an absolute reference ("https://host/fhir"); "" if relative
    )

    @property
    def local(self) -> str:
        return f"{self.type}/{self.id}"


# An export names each patient in hundreds of references: each text is parsed once.
_PARSED: dict[str, Reference | None] = {}
_PARSED_MAX = 100_000


def parse_reference(text: str) -> Reference | None:
    """The target of a literal reference; None for anything that does not name `Type/id`.

    Ids are taken as written: servers such as Epic use ids longer than the 64 characters R4
    allows, and an id with `_` must reach the pull as it reaches the mappers.
    """
    try:
        return _PARSED[text]
    except KeyError:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        parsed = _PARSED[text] = _parse(text)
        return parsed


def _parse(text: str) -> Reference | None:
    if text.startswith("Patient/") and text.count("/") == 1:  # the common case, first
        return Reference("Patient", text[8:]) if _is_id(text[8:]) else None
    if text.startswith(("#", "urn:")):
        return None
    parts = text.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or parts[-2] not in RESOURCE_TYPES or not _is_id(parts[-1]):
        return None
    return Reference(parts[-2], parts[-1], "/".join(parts[:-2]))


def subject_of(resource: Mapping[str, Any], *fields: str) -> Reference | None:
    """The Patient a resource belongs to, through the first of `fields` that is present
    (default `subject`, then `patient`); None when it names no Patient."""
    for field in fields or ("subject", "patient"):
        value = resource.get(field)
        if value is None:
            continue
        text = value.get("reference") if isinstance(value, Mapping) else None
        target = parse_reference(text) if isinstance(text, str) else None
        return target if target is not None and target.type == "Patient" else None
    return None


_ID = re.compile(r"[^/?#\s]+")


def _is_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None
