"""Condition: HCC and other liver cancers, hepatitis B, secondary cancers, transplant status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, NamedTuple

from fhir_hcc.fhir.datatypes import (
    CodeableConcept,
    Extension,
    Reference,
    Resource,
    reads,
    with_choices,
)
from fhir_hcc.mappers.context import (
    MapContext,
    all_codings,
    extension_values,
    has_liver_site,
    status_code,
)
from fhir_hcc.mappings import Mappings, Match

_DROPPED_VERIFICATION = {"entered-in-error", "refuted"}
_CODE_CONCEPTS = ("hcc", "hepatitis_b", "hepatitis_c", "recurrence", "transplant")
_HBV_RESULT = {
    "hbv_condition": "positive",
    "hbsag_positive_finding": "positive",
    "hbsag_negative_finding": "negative",
}


if TYPE_CHECKING:
    _Dated = Resource
else:
    _Dated = with_choices(Resource, "onset")  # when it began


class Condition(_Dated, kw_only=True):
    ESSENTIAL: ClassVar[frozenset[str]] = _Dated.ESSENTIAL | {
        "subject", "patient", "code", "verificationStatus", "clinicalStatus", "recordedDate",
    }  # fmt: skip

    subject: Reference | None = None
    patient: Reference | None = None  # STU3 and some exporters
    code: Annotated[
        CodeableConcept | None,
        reads("hcc", "hepatitis_b", "hepatitis_c", "recurrence", "transplant"),
    ] = None
    # A code string in STU3 (and in exports that still write it): read as the code.
    verificationStatus: CodeableConcept | str | None = None
    clinicalStatus: CodeableConcept | str | None = None
    recordedDate: str | None = None
    bodySite: Annotated[list[CodeableConcept], reads("liver_segments", detail=True)] = []
    extension: Annotated[
        list[Extension], reads(extensions={"histology_morphology_behavior": ("hcc",)})
    ] = []


def map_condition(resource: Condition, ctx: MapContext) -> None:
    patient = ctx.patient_id(resource, "subject", "patient")
    if patient is None:
        return
    verification = status_code(resource.verificationStatus)
    if verification in _DROPPED_VERIFICATION:
        ctx.skip(patient, f"{verification}_dropped", "verificationStatus")
        return
    recorded = ctx.date(resource.recordedDate, "recordedDate", patient)
    onset = ctx.choice_date(resource, patient)
    ctx.contact(patient, recorded)
    day = onset or recorded
    code = ctx.mappings.read_code(resource.code, _read_code)
    if code.hcc:  # the body site and clinical status are read for an HCC code only
        liver_site = has_liver_site(resource.bodySite, ctx)
        clinical = status_code(resource.clinicalStatus)
        for match in code.hcc:
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
    mappings = ctx.mappings
    histology = mappings.extension_urls("histology_morphology_behavior")
    for extension in extension_values(resource.extension, histology):
        for match in mappings.classify("hcc", extension.valueCodeableConcept):
            ctx.fact(patient, "hcc", match.cls, day, match, recorded=recorded)
    for match in code.hbv:
        ctx.fact(patient, "hbv", _HBV_RESULT[match.cls], day, match)
    for match in code.secondary:
        site = _secondary_site(match.cls, resource, ctx)
        ctx.fact(patient, "secondary", match.cls, day, match, site=site)
    for match in code.transplant:
        ctx.fact(patient, "transplant_status", match.cls, day, match)


class _Code(NamedTuple):
    """What a Condition's code says, the same wherever the code is written (read once per
    spelling of the code: `Mappings.read_code`)."""

    hcc: tuple[Match, ...]
    hbv: list[Match]  # those that give a result
    secondary: list[Match]  # secondary cancers
    transplant: list[Match]


def _read_code(code: CodeableConcept | None, mappings: Mappings) -> _Code:
    return _Code(
        hcc=mappings.classify("hcc", code),
        hbv=[match for match in mappings.classify("hepatitis_b", code) if match.cls in _HBV_RESULT],
        secondary=[
            match
            for match in mappings.match_codings("recurrence", all_codings([code]))
            if match.cls.startswith("secondary_")
        ],
        transplant=mappings.match_codings("transplant", all_codings([code])),
    )


def _secondary_site(cls: str, resource: Condition, ctx: MapContext) -> str:
    if cls == "secondary_liver" or has_liver_site(resource.bodySite, ctx):
        return "liver"
    sites = ctx.mappings.table("recurrence", "sites")
    prefixes = sorted(
        ((p.replace(".", "").upper(), str(s)) for p, s in sites.items()), reverse=True
    )
    for coding in all_codings([resource.code]):
        _, code = ctx.mappings.normalise(coding.system, coding.code)
        for prefix, site in prefixes:
            if code.startswith(prefix):
                return site
    texts = [concept.text for concept in resource.bodySite]
    displays = [coding.display for coding in all_codings(resource.bodySite)]
    return next((text for text in (*texts, *displays) if text), "extrahepatic, site not coded")
