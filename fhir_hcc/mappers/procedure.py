"""Procedure: hepatic resections (with Couinaud segments), Y-90, embolisation, transplant."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, ClassVar, NamedTuple

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
from fhir_hcc.mappings import Mappings, Match

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


class _Code(NamedTuple):
    """What a Procedure's code says, the same wherever the code is written (read once per
    spelling of the code: `Mappings.read_code`)."""

    text: str
    resection: Match | None  # by code
    resection_text: Match | None  # by text, which counts only with liver context
    text_segments: frozenset[int]  # Couinaud segments the text names
    liver_text: bool
    y90: frozenset[str]  # classes by code
    y90_text: Match | None  # by text or displays
    transplant: tuple[Match, ...]
    relevant: bool  # a resection, Y-90 or transplant code or text


def _read_code(code: CodeableConcept | None, mappings: Mappings) -> _Code:
    text = (code.text if code else None) or ""
    resection = mappings.match_codings("resection", codings(code))
    displays = (coding.display for coding in codings(code))
    return _Code(
        text=text,
        resection=resection[0] if resection else None,
        resection_text=mappings.match_text("resection", text),
        text_segments=frozenset(segments_in_text(text)),
        liver_text=_LIVER_TEXT.search(text) is not None,
        y90=frozenset(match.cls for match in mappings.match_codings("y90", codings(code))),
        y90_text=mappings.match_text("y90", text, *displays),
        transplant=mappings.classify("transplant", code),
        relevant=any(mappings.classify(name, code) for name in ("resection", "y90", "transplant")),
    )


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
    code = ctx.mappings.read_code(resource.code, _read_code)
    completed = status in _DONE or (status == "in-progress" and _has_end(resource))
    if not completed:
        if code.relevant:
            ctx.skip(patient, f"procedure_{status}_dropped", f"status={status}")
        return
    segments = _segments(resource, code, ctx)
    _map_resection(patient, resource, day, segments, code, ctx)
    _map_y90(patient, resource, day, code, ctx)
    for match in code.transplant:
        ctx.fact(patient, "transplant", match.cls, day, match)


def _map_resection(
    patient: str,
    resource: Procedure,
    day: FhirDate | None,
    segments: frozenset[int],
    code: _Code,
    ctx: MapContext,
) -> None:
    match = code.resection
    # Text alone counts only with liver context: "wedge resection" may be a lung's.
    if match is None and code.resection_text is not None:
        liver = segments or code.liver_text or has_liver_site(resource.bodySite, ctx)
        match = code.resection_text if liver else None
    if match is not None:
        kind = _KINDS.get(match.cls, "resection")
        ctx.fact(patient, kind, match.cls, day, match, segments=segments, text=code.text or None)


def _map_y90(
    patient: str, resource: Procedure, day: FhirDate | None, code: _Code, ctx: MapContext
) -> None:
    classes, by_text = code.y90, code.y90_text
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


def _segments(resource: Procedure, code: _Code, ctx: MapContext) -> frozenset[int]:
    found = {
        _ROMAN[match.cls]
        for match in ctx.mappings.match_codings("liver_segments", all_codings(resource.bodySite))
        if match.cls in _ROMAN
    }
    return code.text_segments | found


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
