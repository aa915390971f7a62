"""Patient: sex, birth date, vital status and record links."""

from __future__ import annotations

from typing import Any

from fhir_hcc.facts import Demographics
from fhir_hcc.fhir.references import parse_reference
from fhir_hcc.mappers.context import MapContext, extension_values

_GENDERS = {"male", "female", "other", "unknown"}
_BIRTH_SEX = {"M": "male", "F": "female"}


def map_patient(resource: dict[str, Any], ctx: MapContext) -> None:
    patient_id = resource.get("id")
    if not patient_id:
        ctx.problem("id", "Patient without id")
        return
    record = ctx.collected.patient(patient_id)
    if record.demographics is not None:
        ctx.skip(patient_id, "duplicate_resource", "a second copy of the Patient was ignored")
        return
    gender = resource.get("gender")
    if gender is not None and gender not in _GENDERS:
        ctx.problem("gender", f"unknown gender {gender!r}")
        gender = None
    record.demographics = Demographics(
        source=ctx.ref,
        gender=gender,
        birth_date=ctx.date(resource.get("birthDate"), "birthDate", patient_id)
        if "birthDate" in resource
        else None,
        birth_sex=_birth_sex(resource, ctx),
        deceased=bool(resource.get("deceasedBoolean")) or "deceasedDateTime" in resource,
        deceased_date=ctx.date(resource.get("deceasedDateTime"), "deceasedDateTime", patient_id)
        if "deceasedDateTime" in resource
        else None,
        replaced_by=_replaced_by(resource),
    )


def _birth_sex(resource: dict[str, Any], ctx: MapContext) -> str | None:
    urls = ctx.mappings.extension_urls("us_core_birthsex")
    for extension in extension_values(resource, urls):
        return _BIRTH_SEX.get(extension.get("valueCode", ""))
    return None


def _replaced_by(resource: dict[str, Any]) -> str | None:
    for link in resource.get("link") or []:
        if link.get("type") == "replaced-by":
            target = parse_reference((link.get("other") or {}).get("reference", ""))
            if target and target.type == "Patient":
                return target.id
    return None
