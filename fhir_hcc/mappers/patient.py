"""Patient: sex, birth date, vital status and record links."""

from __future__ import annotations

from msgspec import Struct

from fhir_hcc.facts import Demographics
from fhir_hcc.fhir.datatypes import Extension, Reference, Resource
from fhir_hcc.fhir.references import parse_reference
from fhir_hcc.mappers.context import MapContext, extension_values

_GENDERS = {"male", "female", "other", "unknown"}
_BIRTH_SEX = {"M": "male", "F": "female"}


class Link(Struct):
    other: Reference | None = None
    type: str | None = None


class Patient(Resource, kw_only=True):
    """Every element is detail here: a malformed one is dropped alone (and the patient's row
    flagged), so that a bad `gender` does not also cost the birth date and the death."""

    gender: str | None = None
    birthDate: str | None = None
    deceasedBoolean: bool | None = None
    deceasedDateTime: str | None = None
    extension: list[Extension] = []  # US Core birth sex
    link: list[Link] = []


def map_patient(resource: Patient, ctx: MapContext) -> None:
    patient_id = resource.id
    if not patient_id:
        ctx.problem("id", "Patient without id")
        return
    ctx.patient = patient_id
    record = ctx.collected.patient(patient_id)
    gender = resource.gender
    if gender is not None and gender not in _GENDERS:
        ctx.problem("gender", "unknown gender code")
        gender = None
    demographics = Demographics(
        source=ctx.ref,
        gender=gender,
        birth_date=ctx.date(resource.birthDate, "birthDate", patient_id),
        birth_sex=_birth_sex(resource, ctx),
        deceased=bool(resource.deceasedBoolean) or resource.deceasedDateTime is not None,
        deceased_date=ctx.date(resource.deceasedDateTime, "deceasedDateTime", patient_id),
        replaced_by=_replaced_by(resource),
    )
    # A second copy is read like any Patient (its problems and notes count) before it is
    # ignored, so the result is the same whether one process read both copies or two workers
    # (or Spark tasks) read one each and `Collected.merge` met the second.
    if record.demographics is not None:
        ctx.skip(patient_id, "duplicate_resource", "a second copy of the Patient was ignored")
        return
    record.demographics = demographics


def _birth_sex(resource: Patient, ctx: MapContext) -> str | None:
    urls = ctx.mappings.extension_urls("us_core_birthsex")
    for extension in extension_values(resource.extension, urls):
        return _BIRTH_SEX.get(extension.valueCode or "")
    return None


def _replaced_by(resource: Patient) -> str | None:
    for link in resource.link:
        if link.type == "replaced-by":
            target = parse_reference((link.other.reference if link.other else None) or "")
            if target and target.type == "Patient":
                return target.id
    return None
