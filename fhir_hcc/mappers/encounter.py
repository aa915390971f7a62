"""Encounter and DiagnosticReport: contact dates, deaths at discharge, pathology conclusions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar

from msgspec import Struct

from fhir_hcc.fhir.datatypes import (
    CodeableConcept,
    Period,
    Reference,
    Resource,
    reads,
    with_choices,
)
from fhir_hcc.mappers.context import MapContext, codings
from fhir_hcc.mappings import Mappings

_DROPPED = {"entered-in-error", "cancelled"}


class Hospitalization(Struct):
    dischargeDisposition: Annotated[CodeableConcept | None, reads("death", detail=True)] = None


class Encounter(Resource, kw_only=True):
    ESSENTIAL: ClassVar[frozenset[str]] = Resource.ESSENTIAL | {
        "subject", "patient", "status", "period",
    }  # fmt: skip

    subject: Reference | None = None
    patient: Reference | None = None
    status: str | None = None
    period: Period | None = None
    hospitalization: Hospitalization | None = None


if TYPE_CHECKING:
    _Dated = Resource
else:
    _Dated = with_choices(Resource, "effective")  # when it was issued


class DiagnosticReport(_Dated, kw_only=True):
    ESSENTIAL: ClassVar[frozenset[str]] = _Dated.ESSENTIAL | {
        "subject", "status", "code", "conclusion",
    }  # fmt: skip

    subject: Reference | None = None
    status: str | None = None
    code: Annotated[CodeableConcept | None, reads("pathology")] = None
    conclusion: str | None = None


def map_encounter(resource: Encounter, ctx: MapContext) -> None:
    patient = ctx.patient_id(resource, "subject", "patient")
    if patient is None:
        return
    if resource.status in _DROPPED:
        ctx.skip(patient, f"{resource.status}_dropped", "status")
        return
    period = resource.period
    end = (period.end or period.start) if period else None
    day = ctx.date(end, "period.end", patient) if end else None
    ctx.contact(patient, day)
    disposition = (
        resource.hospitalization.dischargeDisposition if resource.hospitalization else None
    )
    for match in ctx.mappings.classify("death", disposition):
        if match.cls == "expired":
            ctx.fact(patient, "death", "dead", day, "discharge disposition: expired")


def map_diagnostic_report(resource: DiagnosticReport, ctx: MapContext) -> None:
    patient = ctx.patient_id(resource, "subject")
    if patient is None:
        return
    if resource.status in _DROPPED:
        ctx.skip(patient, f"{resource.status}_dropped", "status")
        return
    day = ctx.choice_date(resource, patient)
    ctx.contact(patient, day)
    is_pathology = ctx.mappings.read_code(resource.code, _is_pathology_report)
    if is_pathology and ctx.mappings.match_text("pathology", resource.conclusion):
        ctx.fact(patient, "necrosis", "complete", day, "pathology report conclusion text")


def _is_pathology_report(code: CodeableConcept | None, mappings: Mappings) -> bool:
    """Whether a report's code is a pathology report's (read once per spelling of the code)."""
    matches = mappings.match_codings("pathology", codings(code))
    return any(match.cls == "pathology_report" for match in matches)
