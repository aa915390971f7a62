"""Mappers: one module per resource type, turning a resource (a plain dict) into patient facts.

Mappers know nothing of HTTP, files or the registry: they read one resource and record facts,
contact dates and data-quality notes through a `MapContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_hcc.fhir.types import RESOURCE_TYPES
from fhir_hcc.mappers.condition import map_condition
from fhir_hcc.mappers.context import MapContext
from fhir_hcc.mappers.encounter import map_diagnostic_report, map_encounter
from fhir_hcc.mappers.medication import map_medication, map_medication_use
from fhir_hcc.mappers.observation import map_observation
from fhir_hcc.mappers.patient import map_patient
from fhir_hcc.mappers.procedure import map_procedure
from fhir_hcc.mappers.skim import skim_observation
from fhir_hcc.sources import Origin, decode

Mapper = Callable[[dict[str, Any], MapContext], None]

MAPPERS: dict[str, Mapper] = {
    "Patient": map_patient,
    "Condition": map_condition,
    "Procedure": map_procedure,
    "MedicationAdministration": map_medication_use,
    "MedicationStatement": map_medication_use,
    "MedicationRequest": map_medication_use,
    "Medication": map_medication,
    "Observation": map_observation,
    "Encounter": map_encounter,
    "DiagnosticReport": map_diagnostic_report,
}


def map_item(item: dict[str, Any] | bytes, origin: Origin, ctx: MapContext) -> None:
    """Map a source item: a decoded resource, or an NDJSON line (skimmed, else decoded)."""
    if isinstance(item, bytes):
        if skim_observation(item, ctx):
            return
        resource = decode(item, origin, ctx.report)
        if resource is None:
            return
        item = resource
    map_resource(item, origin, ctx)


def map_resource(resource: dict[str, Any], origin: Origin, ctx: MapContext) -> None:
    """Record the facts of one resource; unknown or unusable input is reported, never raised."""
    ctx.start(resource, origin)
    resource_type = resource["resourceType"]
    ctx.collected.resources_read[resource_type] += 1
    mapper = MAPPERS.get(resource_type)
    if mapper is not None:
        mapper(resource, ctx)
    elif resource_type not in RESOURCE_TYPES:
        ctx.problem("resourceType", f"unknown resourceType {resource_type!r}")


__all__ = ["MAPPERS", "MapContext", "map_item", "map_resource"]
