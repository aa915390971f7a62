"""MedicationAdministration (MedicationStatement / MedicationRequest as fallbacks), Medication.

The drug is read from medicationCodeableConcept, a contained Medication, a Medication resource
referenced from elsewhere in the data (resolved by the cohort builder once all are read), or the
R5 `medication` CodeableReference. Codes first, then the drug-name patterns.
"""

from __future__ import annotations

from typing import Any

from fhir_hcc.dates import FhirDate
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


def map_medication_use(resource: dict[str, Any], ctx: MapContext) -> None:
    patient = ctx.patient_id(resource, "subject", "patient")
    if patient is None:
        return
    resource_type = resource["resourceType"]
    if resource_type == "MedicationRequest":
        day = (
            ctx.date(resource.get("authoredOn"), "authoredOn", patient)
            if "authoredOn" in resource
            else None
        )
    else:
        day = ctx.choice_date(resource, "effective", "occurence", patient=patient)
    status = resource.get("status")
    if resource_type == "MedicationAdministration":
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
    patient: str, resource: dict[str, Any], day: FhirDate | None, status: Any, ctx: MapContext
) -> None:
    """Y-90 microspheres are devices, but may be charted as a medication given (2.6)."""
    concept = resource.get("medicationCodeableConcept")
    found = [m for m in ctx.mappings.classify("y90", concept) if m.cls == "y90"]
    if found and status in _GIVEN[resource["resourceType"]]:
        ctx.fact(patient, "y90", "y90", day, found[0])


def map_medication(resource: dict[str, Any], ctx: MapContext) -> None:
    """A Medication resource: remember its drug classes for administrations referencing it."""
    medication_id = resource.get("id")
    if medication_id:
        ctx.collected.medications[medication_id] = medication_classes(resource, ctx)


def medication_classes(medication: dict[str, Any], ctx: MapContext) -> list[str]:
    found = _classify_drug(medication.get("code"), ctx)
    for ingredient in medication.get("ingredient") or []:
        found += _classify_drug(ingredient.get("itemCodeableConcept"), ctx)
    return sorted(set(found))


def _drugs(resource: dict[str, Any], ctx: MapContext) -> tuple[list[str], str | None]:
    """(drug classes, id of a Medication still to resolve) of a medication[x] element."""
    concept = resource.get("medicationCodeableConcept")
    reference = (resource.get("medicationReference") or {}).get("reference")
    r5 = resource.get("medication")
    if isinstance(r5, dict):  # R5 CodeableReference
        concept = concept or r5.get("concept")
        reference = reference or (r5.get("reference") or {}).get("reference")
    if concept is not None:
        return _classify_drug(concept, ctx), None
    if not isinstance(reference, str):
        return [], None
    if reference.startswith("#"):
        contained = _contained(resource, reference[1:])
        if contained is None:
            ctx.problem("medicationReference", f"contained resource {reference} not found")
            return [], None
        return medication_classes(contained, ctx), None
    target = parse_reference(reference)
    if target is None or target.type != "Medication":
        ctx.problem("medicationReference", f"not a Medication reference: {reference!r}")
        return [], None
    return [], target.id


def _classify_drug(concept: Any, ctx: MapContext) -> list[str]:
    return [match.cls for match in ctx.mappings.classify("chemotherapy", concept)]


def _contained(resource: dict[str, Any], local_id: str) -> dict[str, Any] | None:
    for contained in resource.get("contained") or []:
        if contained.get("id") == local_id:
            return contained
    return None


def _route(resource: dict[str, Any], ctx: MapContext) -> str | None:
    dosage = resource.get("dosage")
    if isinstance(dosage, list):  # MedicationStatement / MedicationRequest dosageInstruction
        dosage = dosage[0] if dosage else None
    route = (dosage or {}).get("route")
    matches = ctx.mappings.classify("routes", route)
    return matches[0].cls if matches else None


def _dose(resource: dict[str, Any]) -> float | None:
    dosage = resource.get("dosage")
    dose = dosage.get("dose") if isinstance(dosage, dict) else None
    value = dose.get("value") if isinstance(dose, dict) else None
    return float(value) if isinstance(value, int | float) else None
