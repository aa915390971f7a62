"""A fast path for the bulk of an export: routine Observations that only add a contact date.

An NDJSON line is first decoded into a small typed struct holding just the fields that decide
whether the Observation matters (msgspec skips everything else, ~2.5x faster than decoding the
whole resource). Only a plain, valid, dated Observation whose codes the mappings do not use takes
this path; anything else (a mapped code, a coded value, a partial or odd date, a missing subject,
a dropped status, malformed JSON) is decoded in full and mapped the ordinary way, so both paths
give the same facts, notes and problem reports.
"""

from __future__ import annotations

from functools import cache

import msgspec

from fhir_hcc.dates import parse_date
from fhir_hcc.fhir.references import parse_reference
from fhir_hcc.mappers.context import MapContext
from fhir_hcc.mappers.observation import DROPPED_STATUSES, observation_index
from fhir_hcc.mappings import Mappings


class _Coding(msgspec.Struct):
    system: str | None = None
    code: str | None = None


class _Concept(msgspec.Struct):
    coding: list[_Coding] = []


class _Reference(msgspec.Struct):
    reference: str | None = None


class _Period(msgspec.Struct):
    start: str | None = None
    end: str | None = None


class _Skim(msgspec.Struct):
    resourceType: str = ""  # FHIR element names, as in the JSON
    id: str | None = None
    status: str | None = None
    subject: _Reference | None = None
    code: _Concept | None = None
    effectiveDateTime: str | None = None
    effectiveInstant: str | None = None
    effectivePeriod: _Period | None = None
    valueCodeableConcept: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_DECODER = msgspec.json.Decoder(_Skim)


@cache
def _mapped_codes(mappings: Mappings) -> dict[tuple[str | None, str | None], bool]:
    """Whether a coding, as written, is one the Observation mapper reads: filled as codes come."""
    return {}


def skim_observation(line: bytes, ctx: MapContext) -> bool:
    """Record a routine Observation's contact date; False when it needs the full mapper."""
    try:
        skim = _DECODER.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    if skim.resourceType != "Observation" or skim.valueCodeableConcept is not msgspec.UNSET:
        return False
    if skim.status in DROPPED_STATUSES or not skim.id or skim.subject is None:
        return False
    target = parse_reference(skim.subject.reference or "")
    if target is None or target.type != "Patient":
        return False
    period = skim.effectivePeriod
    when = skim.effectiveDateTime or skim.effectiveInstant
    if when is None and period is not None:
        when = period.start or period.end
    if when is None or len(when) < 10:
        return False  # undated or partial: the full path notes it
    if skim.code is not None:
        mapped = _mapped_codes(ctx.mappings)
        for coding in skim.code.coding:
            key = (coding.system, coding.code)
            hit = mapped.get(key)
            if hit is None:
                hit = mapped[key] = ctx.mappings.normalise(*key) in observation_index(ctx.mappings)
            if hit:
                return False
    try:
        day = parse_date(when, ctx.zone)
    except ValueError:
        return False
    ctx.collected.resources_read["Observation"] += 1
    ctx.collected.patient(target.id).add_contact(day, f"Observation/{skim.id}")
    return True
