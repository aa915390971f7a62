"""FHIR references: the one parser for `Type/id`, absolute URLs and `_history` versions.

Contained (`#id`) and `urn:uuid:` references are not parsed here: the Bundle reader rewrites the
second to `Type/id`, and the mappers read contained resources in place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from fhir_hcc.fhir.types import RESOURCE_TYPES


class Target(NamedTuple):
    """What a literal reference points at."""

    type: str
    id: str
    base: str = (
        ""  # the service base of an absolute reference ("https://host/fhir"); "" if relative
    )


# An export names each patient in hundreds of references: each text is parsed once.
_PARSED: dict[str, Target | None] = {}
_PARSED_MAX = 100_000


def parse_reference(text: str) -> Target | None:
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


def _parse(text: str) -> Target | None:
    if text.startswith("Patient/") and text.count("/") == 1:  # the common case, first
        return Target("Patient", text[8:]) if _is_id(text[8:]) else None
    if text.startswith(("#", "urn:")):
        return None
    parts = text.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or parts[-2] not in RESOURCE_TYPES or not _is_id(parts[-1]):
        return None
    return Target(parts[-2], parts[-1], "/".join(parts[:-2]))


def target_of(element: Any) -> Target | None:
    """The target of a Reference element (a JSON object with a `reference` string), whatever
    shape the element has; None when it names nothing."""
    text = element.get("reference") if isinstance(element, Mapping) else None
    return parse_reference(text) if isinstance(text, str) else None


def subject_of(resource: Mapping[str, Any], *fields: str) -> Target | None:
    """The Patient a resource belongs to, through the first of `fields` that is present
    (default `subject`, then `patient`); None when it names no Patient."""
    for field in fields or ("subject", "patient"):
        value = resource.get(field)
        if value is None:
            continue
        target = target_of(value)
        return target if target is not None and target.type == "Patient" else None
    return None


_ID = re.compile(r"[^/?#\s]+")


# What a message may show of a resource's type and id: names of the FHIR grammar only (ids a bit
# longer, as Epic's are). Anything else is "?", so a value never reaches a log line.
_SHOWN_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_SHOWN_ID = re.compile(r"[A-Za-z0-9\-._]{1,200}")
_shown_id, _shown_type = _SHOWN_ID.fullmatch, _SHOWN_TYPE.fullmatch  # label() names every source


def label(resource_type: object, resource_id: object) -> str:
    """`Type/id` of a resource for messages and provenance, `?` for a part that is not a name."""
    shown_id = resource_id if isinstance(resource_id, str) and _shown_id(resource_id) else "?"
    return f"{shown_type(resource_type)}/{shown_id}"


def shown_type(resource_type: object) -> str:
    """A resource type as a message may show it: a type name, else `?`."""
    if isinstance(resource_type, str) and _shown_type(resource_type):
        return resource_type
    return "?"


def _is_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None
