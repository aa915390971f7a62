"""Condition: HCC and other liver cancers, hepatitis B, secondary cancers, transplant status."""

from __future__ import annotations

from typing import Any

from fhir_hcc.mappers.context import (
    MapContext,
    all_codings,
    extension_values,
    has_liver_site,
    status_code,
)

_DROPPED_VERIFICATION = {"entered-in-error", "refuted"}
_HBV_RESULT = {
    "hbv_condition": "positive",
    "hbsag_positive_finding": "positive",
    "hbsag_negative_finding": "negative",
}


def map_condition(resource: dict[str, Any], ctx: MapContext) -> None:
    patient = ctx.patient_id(resource, "subject", "patient")
    if patient is None:
        return
    verification = status_code(resource.get("verificationStatus"))
    if verification in _DROPPED_VERIFICATION:
        ctx.skip(patient, f"{verification}_dropped", "verificationStatus")
        return
    recorded = ctx.date(resource.get("recordedDate"), "recordedDate", patient)
    onset = ctx.choice_date(resource, "onset", patient=patient)
    ctx.contact(patient, recorded)
    day = onset or recorded
    code = resource.get("code")
    mappings = ctx.mappings
    liver_site = has_liver_site(resource, ctx)
    clinical = status_code(resource.get("clinicalStatus"))
    for match in mappings.classify("hcc", code):
        ctx.fact(
            patient,
            "hcc",
            match.cls,
            day,
            match,
            recorded=recorded,
            liver_site=liver_site,
            clinical_status=clinical,
        )
    histology = mappings.extension_urls("histology_morphology_behavior")
    for extension in extension_values(resource, histology):
        for match in mappings.classify("hcc", extension.get("valueCodeableConcept")):
            ctx.fact(patient, "hcc", match.cls, day, match, recorded=recorded)
    for match in mappings.classify("hepatitis_b", code):
        if match.cls in _HBV_RESULT:
            ctx.fact(patient, "hbv", _HBV_RESULT[match.cls], day, match)
    for match in mappings.match_codings("recurrence", all_codings([code])):
        if match.cls.startswith("secondary_"):
            site = _secondary_site(match.cls, resource, ctx)
            ctx.fact(patient, "secondary", match.cls, day, match, site=site)
    for match in mappings.match_codings("transplant", all_codings([code])):
        ctx.fact(patient, "transplant_status", match.cls, day, match)


def _secondary_site(cls: str, resource: dict[str, Any], ctx: MapContext) -> str:
    if cls == "secondary_liver" or has_liver_site(resource, ctx):
        return "liver"
    sites = ctx.mappings.table("recurrence", "sites")
    prefixes = sorted(
        ((p.replace(".", "").upper(), str(s)) for p, s in sites.items()), reverse=True
    )
    for coding in all_codings([resource.get("code")]):
        _, code = ctx.mappings.normalise(coding.get("system"), coding.get("code"))
        for prefix, site in prefixes:
            if code.startswith(prefix):
                return site
    body = resource.get("bodySite") or []
    texts = [concept.get("text") for concept in body if isinstance(concept, dict)]
    displays = [coding.get("display") for coding in all_codings(body)]
    return next((text for text in (*texts, *displays) if text), "extrahepatic, site not coded")
