"""Observation: HBsAg, AFP, tumour necrosis, cancer disease status, vital status.

This is the hot path of a large export (most resources are routine labs), so a noise
Observation costs one index lookup per coding and adds only its date as a contact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, ClassVar

from msgspec import UNSET, Raw, Struct, UnsetType

from fhir_hcc.dates import FhirDate
from fhir_hcc.fhir.datatypes import (
    CodeableConcept,
    Extension,
    Quantity,
    Reference,
    Resource,
    reads,
    with_choices,
)
from fhir_hcc.mappers.context import MapContext, codings, extension_values
from fhir_hcc.mappings import Mappings, Match

DROPPED_STATUSES = frozenset({"entered-in-error", "cancelled"})
_OBSERVATION_CONCEPTS = ("hepatitis_b", "afp", "pathology", "recurrence", "death")
_LEGACY_STATUS_CODE = "disease_status_legacy"
_VALUE_CONCEPTS = ("results", "hepatitis_b", "death", "recurrence", "pathology", "hcc")


class _CodeKey(Struct, frozen=True):
    system: str | None = None
    code: str | None = None


class _CodeKeys(Struct):
    coding: list[_CodeKey] = []


if TYPE_CHECKING:
    _Dated = Resource
else:
    _Dated = with_choices(Resource, "effective")  # when it was made


class ObservationDate(_Dated, kw_only=True):
    """What is read first of an Observation: whose it is, whether and when it was made, its
    codes and whether it has a coded value. Most of an export's Observations are routine labs
    whose codes no mapping lists and which add only a contact date: those are read no further
    (`needs_reading_whole`), so their other elements are not read, nor checked."""

    ESSENTIAL: ClassVar[frozenset[str]] = _Dated.ESSENTIAL | {
        "subject", "patient", "status", "code", "valueCodeableConcept", "valueQuantity",
        "valueString", "interpretation",
    }  # fmt: skip

    subject: Reference | None = None
    patient: Reference | None = None
    status: str | None = None
    code: _CodeKeys | None = None
    valueCodeableConcept: Raw | UnsetType = UNSET  # only whether there is one


class Observation(ObservationDate, kw_only=True):
    """An Observation read whole: one whose code a mapping lists, or with a coded value."""

    code: Annotated[CodeableConcept | None, reads(*_OBSERVATION_CONCEPTS)] = None  # type: ignore[assignment]
    valueCodeableConcept: Annotated[
        CodeableConcept | None, reads(*_VALUE_CONCEPTS, detail=True)
    ] = None  # type: ignore[assignment]
    valueQuantity: Quantity | None = None
    valueString: str | None = None
    interpretation: Annotated[list[CodeableConcept], reads("results", detail=True)] = []
    extension: list[Extension] = []  # mCODE disease-status evidence type


def needs_reading_whole(mappings: Mappings) -> Callable[[ObservationDate], bool]:
    """Whether an Observation's codes or value may say more than a contact date."""
    index = mappings.index(_OBSERVATION_CONCEPTS)
    mapped: dict[_CodeKey, bool] = {}  # an export repeats a few thousand codes: each once

    def needs(first: ObservationDate) -> bool:
        if first.valueCodeableConcept is not UNSET:
            return True
        for key in first.code.coding if first.code is not None else ():
            hit = mapped.get(key)
            if hit is None:
                hit = mapped[key] = mappings.normalise(key.system, key.code) in index
            if hit:
                return True
        return False

    return needs


def map_observation(resource: ObservationDate, ctx: MapContext) -> None:
    routine = not isinstance(resource, Observation)  # read for its date only
    if routine and resource.status not in DROPPED_STATUSES and ctx.contact_only(resource):
        return  # the short way: a contact, nothing to report
    patient = ctx.patient_id(resource, "subject", "patient")
    if patient is None:
        return
    day = ctx.choice_date(resource, patient)
    if resource.status in DROPPED_STATUSES:
        ctx.skip(patient, f"{resource.status}_dropped", "status")
        return
    ctx.contact(patient, day)
    if not isinstance(resource, Observation):
        return
    index = ctx.mappings.index(_OBSERVATION_CONCEPTS)
    normalise = ctx.mappings.normalise
    for coding in codings(resource.code):
        for match in index.get(normalise(coding.system, coding.code), ()):
            _HANDLERS[match.concept](patient, match, resource, day, ctx)
            return
    value = resource.valueCodeableConcept
    if value is not None:
        _map_coded_value(patient, value, day, ctx)


def _map_hbv(
    patient: str, match: Match, resource: Observation, day: FhirDate | None, ctx: MapContext
) -> None:
    if match.cls == "do_not_use":
        ctx.skip(patient, "code_not_used", f"{match.code}: {match.display}")
        return
    if match.cls in ("hbsag_positive_finding", "hbsag_negative_finding"):
        result: str | None = "positive" if match.cls == "hbsag_positive_finding" else "negative"
    elif match.cls == "hbsag_quantitative":
        result = _quantitative_result(resource, match, ctx)
    elif match.cls == "hbsag_test":
        result = _qualitative_result(resource, ctx)
    else:
        return  # HBV DNA is supportive only: not the paper's definition
    if result is None:
        ctx.skip(patient, "hbsag_result_unreadable", "value[x] gives no positive/negative result")
        return
    ctx.fact(patient, "hbv", result, day, match)


def _qualitative_result(resource: Observation, ctx: MapContext) -> str | None:
    mappings = ctx.mappings
    for match in mappings.classify("results", resource.valueCodeableConcept):
        return match.cls
    text = resource.valueString
    if text is not None:
        found = mappings.match_text("results", text)
        if found:
            return found.cls
    return _interpretation(resource, ctx)


def _quantitative_result(resource: Observation, match: Match, ctx: MapContext) -> str | None:
    interpreted = _interpretation(resource, ctx)
    if interpreted:
        return interpreted
    value = resource.valueQuantity.value if resource.valueQuantity else None
    threshold = ctx.mappings.table("hepatitis_b", "quantitative").get("positive_threshold", 0.05)
    if value is None:
        return None
    return "positive" if value >= threshold else "negative"


def _interpretation(resource: Observation, ctx: MapContext) -> str | None:
    for concept in resource.interpretation:
        for match in ctx.mappings.classify("results", concept):
            return match.cls
    return None


def _map_afp(
    patient: str, match: Match, resource: Observation, day: FhirDate | None, ctx: MapContext
) -> None:
    if match.cls == "not_afp_level":
        return
    quantity = resource.valueQuantity or Quantity()
    value = quantity.value
    unit = quantity.code or quantity.unit
    factor = ctx.mappings.table("afp", "units").get(unit) if unit else None
    if value is None or factor is None:
        ctx.skip(patient, "afp_unreadable", f"value {value!r} unit {unit!r}")
        return
    ctx.fact(
        patient,
        "afp",
        match.cls,
        day,
        match,
        ng_per_ml=round(value * factor, 3),
        comparator=quantity.comparator,
    )


def _map_pathology(
    patient: str, match: Match, resource: Observation, day: FhirDate | None, ctx: MapContext
) -> None:
    if match.cls == "necrosis_percent":
        value = resource.valueQuantity.value if resource.valueQuantity else None
        if value is None:
            ctx.skip(patient, "necrosis_unreadable", "valueQuantity.value missing")
            return
        result = "complete" if value >= 100 else "incomplete"
        ctx.fact(patient, "necrosis", result, day, match, percent=value)
        return
    if match.cls == "morphology_observation":  # histologic type: ICD-O-3 8170/3 and the like
        for morphology in ctx.mappings.classify("hcc", resource.valueCodeableConcept):
            ctx.fact(patient, "hcc", morphology.cls, day, morphology)
        return
    concept = resource.valueCodeableConcept
    texts = [resource.valueString, concept.text if concept else None]
    complete = ctx.mappings.match_text("pathology", *texts) or any(
        m.cls == "complete_response_value" for m in ctx.mappings.classify("pathology", concept)
    )
    if complete:
        ctx.fact(patient, "necrosis", "complete", day, f"{match.describe()} (report text)")


def _map_disease_status(
    patient: str, match: Match, resource: Observation, day: FhirDate | None, ctx: MapContext
) -> None:
    if match.cls not in ("disease_status", _LEGACY_STATUS_CODE):
        return  # a value code of the recurrence file used as Observation.code: nothing to read
    if match.cls == _LEGACY_STATUS_CODE:
        ctx.collected.note(patient, "mcode_stu1_normalised", ctx.ref, "88040-1 read as 97509-4")
    values = ctx.mappings.classify("recurrence", resource.valueCodeableConcept)
    if not values:
        ctx.skip(patient, "disease_status_unmapped_value", "valueCodeableConcept")
        return
    evidence = _evidence_type(resource, ctx)
    ctx.fact(patient, "disease_status", values[0].cls, day, match, evidence=evidence)


def _evidence_type(resource: Observation, ctx: MapContext) -> str | None:
    urls = ctx.mappings.extension_urls("disease_status_evidence_type")
    for extension in extension_values(resource.extension, urls):
        for match in ctx.mappings.classify("recurrence", extension.valueCodeableConcept):
            return match.cls
    return None


def _map_vital(
    patient: str, match: Match, resource: Observation, day: FhirDate | None, ctx: MapContext
) -> None:
    if match.cls == "vital_status":
        values = ctx.mappings.classify("death", resource.valueCodeableConcept)
        state = values[0].cls if values else None
    else:
        state = match.cls
    if state in ("dead", "death_event"):
        ctx.fact(patient, "death", "dead", day, match)
    elif state == "lost_to_follow_up":
        ctx.collected.note(patient, "lost_to_follow_up", ctx.ref, "censored at last contact")


def _map_coded_value(
    patient: str, value: CodeableConcept, day: FhirDate | None, ctx: MapContext
) -> None:
    """Findings carried as an Observation value under a generic code (e.g. "HBsAg positive")."""
    for match in ctx.mappings.classify("hepatitis_b", value):
        if match.cls in ("hbsag_positive_finding", "hbsag_negative_finding"):
            result = "positive" if match.cls == "hbsag_positive_finding" else "negative"
            ctx.fact(patient, "hbv", result, day, f"value {match.describe()}")
    for match in ctx.mappings.classify("death", value):
        if match.cls in ("dead", "death_event"):
            ctx.fact(patient, "death", "dead", day, f"value {match.describe()}")


_HANDLERS = {
    "hepatitis_b": _map_hbv,
    "afp": _map_afp,
    "pathology": _map_pathology,
    "recurrence": _map_disease_status,
    "death": _map_vital,
}
