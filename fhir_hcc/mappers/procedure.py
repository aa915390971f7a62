"""Procedure: hepatic resections (with Couinaud segments), Y-90, embolisation, transplant."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, ClassVar

from fhir_hcc.dates import FhirDate
from fhir_hcc.fhir.datatypes import (
    CodeableConcept,
    Extension,
    Period,
    Reference,
    Resource,
    reads,
    with_choices,
)
from fhir_hcc.mappers.context import (
    MapContext,
    all_codings,
    codings,
    extension_values,
    has_liver_site,
)

# Procedures that did not happen (or not yet) are dropped; "unknown" is dropped and flagged.
_DONE = {"completed"}
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8}
_SEGMENT = r"(?:VIII|VII|VI|IV|V|III|II|I|[1-8])"
_SEGMENT_TEXT = re.compile(
    rf"\b(?:bi)?segment(?:s|ectomy|ectomies)?\s+({_SEGMENT}(?:\s*(?:,|and|&|\+|-|\u2013|to)\s*{_SEGMENT})*)\b|\bS([1-8])\b",
    re.IGNORECASE,
)
_LIVER_TEXT = re.compile(r"(?i)liver|hepat")
_KINDS = {  # resection.toml class -> fact kind
    "major": "resection",
    "minor": "resection",
    "unknown_extent": "resection",
    "ambiguous": "resection",
    "ablation": "ablation",
    "biopsy": "biopsy",
    "not_index": "not_index",
}


if TYPE_CHECKING:
    _Dated = Resource
else:  # when it was done, under its R4 name and its R5 one
    _Dated = with_choices(Resource, "performed", "occurrence")


class Procedure(_Dated, kw_only=True):
    ESSENTIAL: ClassVar[frozenset[str]] = _Dated.ESSENTIAL | {
        "subject", "patient", "status", "code",
    }  # fmt: skip

    subject: Reference | None = None
    patient: Reference | None = None
    status: str | None = None
    code: Annotated[CodeableConcept | None, reads("resection", "y90", "transplant")] = None
    bodySite: Annotated[list[CodeableConcept], reads("liver_segments", detail=True)] = []
    extension: list[Extension] = []  # mCODE radiotherapy modality and technique


def map_procedure(resource: Procedure, ctx: MapContext) -> None:
    patient = ctx.patient_id(resource, "subject", "patient")
    if patient is None:
        return
    status = resource.status
    day = ctx.choice_date(resource, patient)
    if status == "entered-in-error":
        ctx.skip(patient, "entered-in-error_dropped", "status")
        return
    ctx.contact(patient, day)
    completed = status in _DONE or (status == "in-progress" and _has_end(resource))
    if not completed:
        if _is_relevant(resource, ctx):
            ctx.skip(patient, f"procedure_{status}_dropped", f"status={status}")
        return
    code = resource.code
    text = (code.text if code else None) or ""
    segments = _segments(resource, text, ctx)
    _map_resection(patient, resource, day, segments, text, ctx)
    _map_y90(patient, resource, day, ctx)
    for match in ctx.mappings.classify("transplant", code):
        ctx.fact(patient, "transplant", match.cls, day, match)


def _map_resection(
    patient: str,
    resource: Procedure,
    day: FhirDate | None,
    segments: set[int],
    text: str,
    ctx: MapContext,
) -> None:
    code = resource.code
    matches = ctx.mappings.match_codings("resection", codings(code))
    if not matches:
        # Text alone counts only with liver context: "wedge resection" may be a lung's.
        text_match = ctx.mappings.match_text("resection", text)
        if text_match and (
            segments or _LIVER_TEXT.search(text) or has_liver_site(resource.bodySite, ctx)
        ):
            matches = [text_match]
    if matches:
        match = matches[0]
        kind = _KINDS.get(match.cls, "resection")
        ctx.fact(
            patient,
            kind,
            match.cls,
            day,
            match,
            segments=frozenset(segments),
            text=text or None,
        )


def _map_y90(patient: str, resource: Procedure, day: FhirDate | None, ctx: MapContext) -> None:
    code = resource.code
    text = (code.text if code else None) or ""
    classes = {match.cls for match in ctx.mappings.match_codings("y90", codings(code))}
    texts = [text, *(coding.display for coding in codings(code))]
    by_text = ctx.mappings.match_text("y90", *texts)
    if by_text is not None and by_text.cls == "workup":
        return  # a mapping angiogram or dose planning is not treatment
    if "workup" in classes and not classes & {"y90", "radiotherapy_course"}:
        return
    if "y90" in classes:
        ctx.fact(patient, "y90", "y90", day, "Y-90 code")
    elif "radiotherapy_course" in classes and (_sirt_technique(resource, ctx) or by_text):
        ctx.fact(
            patient, "y90", "y90", day, "radiotherapy course (radiopharmaceutical, intravascular)"
        )
    elif "embolization_nonspecific" in classes:
        # CPT 37243 alone is not specific: Y-90 with Y-90 text, else the builder pairs it with a
        # same-day Y-90 code or calls it TACE.
        if by_text:
            ctx.fact(patient, "y90", "y90", day, "CPT 37243 with Y-90 text")
        else:
            ctx.fact(patient, "embolization", "embolization", day, "CPT 37243")
    elif by_text is not None and not classes:
        ctx.fact(patient, "y90", "y90", day, "Y-90 text")


def _sirt_technique(resource: Procedure, ctx: MapContext) -> bool:
    urls = ctx.mappings.extension_urls("radiotherapy_modality_and_technique")
    found = set()
    for extension in extension_values(resource.extension, urls):
        for part in extension.extension:
            for match in ctx.mappings.classify("y90", part.valueCodeableConcept):
                found.add(match.cls)
    return {"radiopharmaceutical_modality", "intravascular_technique"} <= found


def _segments(resource: Procedure, text: str, ctx: MapContext) -> set[int]:
    found = {
        _ROMAN[match.cls]
        for match in ctx.mappings.match_codings("liver_segments", all_codings(resource.bodySite))
        if match.cls in _ROMAN
    }
    return found | segments_in_text(text)


def segments_in_text(text: str) -> set[int]:
    """Couinaud segments named in free text: "segments V-VIII", "segment 6 and 7", "S4"."""
    found: set[int] = set()
    for listed, single in _SEGMENT_TEXT.findall(text or ""):
        if single:
            found.add(int(single))
            continue
        tokens = re.findall(rf"{_SEGMENT}|-|\u2013|to", listed, re.IGNORECASE)
        previous: int | None = None
        in_range = False
        for token in tokens:
            if token.lower() in {"-", "\u2013", "to"}:
                in_range = True
                continue
            number = int(token) if token.isdigit() else _ROMAN[token.upper()]
            if in_range and previous is not None:
                found.update(range(min(previous, number), max(previous, number) + 1))
            found.add(number)
            previous, in_range = number, False
    return found


def _has_end(resource: Procedure) -> bool:
    period: Period | None = getattr(resource, "performedPeriod", None)
    return bool(period and period.end)


def _is_relevant(resource: Procedure, ctx: MapContext) -> bool:
    code = resource.code
    return any(
        ctx.mappings.classify(concept, code) for concept in ("resection", "y90", "transplant")
    )
