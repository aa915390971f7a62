"""Encounter and DiagnosticReport: contact dates, deaths at discharge, pathology conclusions."""

from __future__ import annotations

from typing import Any

from fhir_hcc.mappers.context import MapContext, codings

_DROPPED = {"entered-in-error", "cancelled"}


def map_encounter(resource: dict[str, Any], ctx: MapContext) -> None:
    patient = ctx.patient_id(resource, "subject", "patient")
    if patient is None:
        return
    if resource.get("status") in _DROPPED:
        ctx.skip(patient, f"{resource['status']}_dropped", "status")
        return
    period = resource.get("period") or {}
    end = period.get("end") or period.get("start")
    day = ctx.date(end, "period.end", patient) if end else None
    ctx.contact(patient, day)
    disposition = (resource.get("hospitalization") or {}).get("dischargeDisposition")
    for match in ctx.mappings.classify("death", disposition):
        if match.cls == "expired":
            ctx.fact(patient, "death", "dead", day, "discharge disposition: expired")


def map_diagnostic_report(resource: dict[str, Any], ctx: MapContext) -> None:
    patient = ctx.patient_id(resource, "subject")
    if patient is None:
        return
    if resource.get("status") in _DROPPED:
        ctx.skip(patient, f"{resource['status']}_dropped", "status")
        return
    day = ctx.choice_date(resource, "effective", patient=patient)
    ctx.contact(patient, day)
    is_pathology = any(
        match.cls == "pathology_report"
        for match in ctx.mappings.match_codings("pathology", codings(resource.get("code")))
    )
    if is_pathology and ctx.mappings.match_text("pathology", resource.get("conclusion")):
        ctx.fact(patient, "necrosis", "complete", day, "pathology report conclusion text")
