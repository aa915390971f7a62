"""MedicationAdministration (MedicationStatement / MedicationRequest as fallbacks), Medication.

The drug is read from medicationCodeableConcept, a contained Medication, a Medication resource
referenced from elsewhere in the data (resolved by the cohort builder once all are read), or the
R5 `medication` CodeableReference. Codes first, then the drug-name patterns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar

from msgspec import Struct

from fhir_hcc.dates import FhirDate
from fhir_hcc.facts import Drugs
from fhir_hcc.fhir.datatypes import (
    CodeableConcept,
    CodeableReference,
    Quantity,
    Reference,
    Resource,
    reads,
    with_choices,
)
from fhir_hcc.fhir.references import parse_reference
from fhir_hcc.mappers.context import MapContext

# Which statuses mean the drug was given, per resource type (the rest are dropped and counted).
_GIVEN = {
    "MedicationAdministration": {"completed", "in-progress"},
    "MedicationStatement": {"completed", "active"},
    "MedicationRequest": {"completed", "active"},
}
_LEVEL = {
    "MedicationAdministration": "administration",
    "MedicationStatement": "statement",
    "MedicationRequest": "request",
}
_DRUG = ("chemotherapy", "y90")


class Ingredient(Struct):
    itemCodeableConcept: Annotated[CodeableConcept | None, reads("chemotherapy")] = None


class Medication(Resource, kw_only=True):
    code: Annotated[CodeableConcept | None, reads("chemotherapy")] = None
    ingredient: list[Ingredient] = []


class Dosage(Struct):
    route: Annotated[CodeableConcept | None, reads("routes", detail=True)] = None
    dose: Quantity | None = None  # MedicationAdministration.dosage only


class _MedicationUse(Resource, kw_only=True):
    """What the three kinds of medication use share."""

    ESSENTIAL: ClassVar[frozenset[str]] = Resource.ESSENTIAL | {
        "subject", "patient", "status", "medicationCodeableConcept", "medicationReference",
        "medication",
    }  # fmt: skip
    CONTAINED: ClassVar[frozenset[str]] = frozenset({"Medication"})

    subject: Reference | None = None
    patient: Reference | None = None
    status: str | None = None
    medicationCodeableConcept: Annotated[CodeableConcept | None, reads(*_DRUG)] = None
    medicationReference: Reference | None = None
    medication: Annotated[CodeableReference | None, reads(*_DRUG)] = None  # R5
    contained: list[Medication] = []


if TYPE_CHECKING:
    _Given = _MedicationUse
    _Taken = _MedicationUse
else:  # when it was given, under its R4 name and its R5 one (spelled so in R5)
    _Given = with_choices(_MedicationUse, "effective", "occurence")
    _Taken = with_choices(_MedicationUse, "effective")  # when it was taken


class MedicationAdministration(_Given, kw_only=True):
    dosage: Dosage | None = None

    @property
    def dosages(self) -> list[Dosage]:
        return [self.dosage] if self.dosage is not None else []


class MedicationStatement(_Taken, kw_only=True):
    dosage: list[Dosage] = []

    @property
    def dosages(self) -> list[Dosage]:
        return self.dosage


class MedicationRequest(_MedicationUse, kw_only=True):
    ESSENTIAL: ClassVar[frozenset[str]] = _MedicationUse.ESSENTIAL | {"authoredOn"}

    authoredOn: str | None = None
    dosageInstruction: list[Dosage] = []

    @property
    def dosages(self) -> list[Dosage]:
        return self.dosageInstruction


MedicationUse = MedicationAdministration | MedicationStatement | MedicationRequest


def map_medication_use(resource: MedicationUse, ctx: MapContext) -> None:
    patient = ctx.patient_id(resource, "subject", "patient")
    if patient is None:
        return
    resource_type = resource.resourceType
    if isinstance(resource, MedicationRequest):
        day = ctx.date(resource.authoredOn, "authoredOn", patient)
    else:
        day = ctx.choice_date(resource, patient)
    status = resource.status
    if isinstance(resource, MedicationAdministration):
        ctx.contact(patient, day)
    drugs, pending = _drugs(resource, ctx)
    if not drugs and pending is None:
        _map_y90_as_medication(patient, resource, day, status, ctx)
        return
    dose = _dose(resource)
    # A stopped administration counts only if a dose was given before it stopped.
    if status not in _GIVEN[resource_type] and not (status == "stopped" and dose):
        ctx.skip(patient, f"medication_{status}_dropped", f"status={status}")
        return
    route = _route(resource, ctx)
    level = _LEVEL[resource_type]
    for drug in drugs or [""]:
        ctx.fact(
            patient,
            "drug",
            drug,
            day,
            "medication",
            route=route,
            level=level,
            medication=pending,
            dose=dose,
        )


def _map_y90_as_medication(
    patient: str,
    resource: MedicationUse,
    day: FhirDate | None,
    status: str | None,
    ctx: MapContext,
) -> None:
    """Y-90 microspheres are devices, but may be charted as a medication given (2.6)."""
    concept = resource.medicationCodeableConcept
    found = [m for m in ctx.mappings.classify("y90", concept) if m.cls == "y90"]
    if found and status in _GIVEN[resource.resourceType]:
        ctx.fact(patient, "y90", "y90", day, found[0])


def map_medication(resource: Medication, ctx: MapContext) -> None:
    """A Medication resource: remember its drug classes for administrations referencing it."""
    if resource.id:
        classes = medication_classes(resource, ctx)
        ctx.collected.medications[resource.id] = Drugs(classes, ctx.reader.mended)


def medication_classes(medication: Medication, ctx: MapContext) -> list[str]:
    found = _classify_drug(medication.code, ctx)
    for ingredient in medication.ingredient:
        found += _classify_drug(ingredient.itemCodeableConcept, ctx)
    return sorted(set(found))


def _drugs(resource: MedicationUse, ctx: MapContext) -> tuple[list[str], str | None]:
    """(drug classes, id of a Medication still to resolve) of a medication[x] element."""
    concept = resource.medicationCodeableConcept
    reference = resource.medicationReference.reference if resource.medicationReference else None
    r5 = resource.medication
    if r5 is not None:  # R5 CodeableReference
        concept = concept or r5.concept
        reference = reference or (r5.reference.reference if r5.reference else None)
    if concept is not None:
        return _classify_drug(concept, ctx), None
    if reference is None:
        return [], None
    if reference.startswith("#"):
        contained = _contained(resource, reference[1:])
        if contained is None:
            ctx.problem("medicationReference", f"contained resource {reference} not found")
            return [], None
        return medication_classes(contained, ctx), None
    target = parse_reference(reference)
    if target is None or target.type != "Medication":
        ctx.problem("medicationReference", "not a Medication reference")
        return [], None
    return [], target.id


def _classify_drug(concept: CodeableConcept | None, ctx: MapContext) -> list[str]:
    return [match.cls for match in ctx.mappings.classify("chemotherapy", concept)]


def _contained(resource: MedicationUse, local_id: str) -> Medication | None:
    for contained in resource.contained:
        if contained.id == local_id:
            return contained
    return None


def _route(resource: MedicationUse, ctx: MapContext) -> str | None:
    dosages = resource.dosages
    matches = ctx.mappings.classify("routes", dosages[0].route if dosages else None)
    return matches[0].cls if matches else None


def _dose(resource: MedicationUse) -> float | None:
    if not isinstance(resource, MedicationAdministration) or resource.dosage is None:
        return None
    dose = resource.dosage.dose
    return dose.value if dose is not None else None
