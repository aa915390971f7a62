"""Mappers: one module per resource type, turning a resource into patient facts.

Each module declares the typed struct of the elements it reads (`fhir_hcc.fhir.datatypes`) and
the function that maps one such resource. Mappers know nothing of HTTP, files or the registry:
they read one resource and record facts, contact dates and data-quality notes through a
`MapContext`.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from fhir_hcc.facts import Collected
from fhir_hcc.mappers.condition import Condition, map_condition
from fhir_hcc.mappers.context import MapContext, Mapper
from fhir_hcc.mappers.encounter import (
    DiagnosticReport,
    Encounter,
    map_diagnostic_report,
    map_encounter,
)
from fhir_hcc.mappers.medication import (
    Medication,
    MedicationAdministration,
    MedicationRequest,
    MedicationStatement,
    map_medication,
    map_medication_use,
)
from fhir_hcc.mappers.observation import (
    Observation,
    ObservationDate,
    map_observation,
    needs_reading_whole,
)
from fhir_hcc.mappers.patient import Patient, map_patient
from fhir_hcc.mappers.procedure import Procedure, map_procedure
from fhir_hcc.mappings import Mappings
from fhir_hcc.problems import ProblemSink

MAPPERS: dict[str, Mapper] = {
    "Patient": Mapper(Patient, map_patient),
    "Condition": Mapper(Condition, map_condition),
    "Procedure": Mapper(Procedure, map_procedure),
    "MedicationAdministration": Mapper(MedicationAdministration, map_medication_use),
    "MedicationStatement": Mapper(MedicationStatement, map_medication_use),
    "MedicationRequest": Mapper(MedicationRequest, map_medication_use),
    "Medication": Mapper(Medication, map_medication),
    "Observation": Mapper(Observation, map_observation, ObservationDate, needs_reading_whole),
    "Encounter": Mapper(Encounter, map_encounter),
    "DiagnosticReport": Mapper(DiagnosticReport, map_diagnostic_report),
}
SCHEMAS = {name: mapper.schema for name, mapper in MAPPERS.items()}


def mapping_context(
    mappings: Mappings, collected: Collected, sink: ProblemSink, zone: ZoneInfo | None = None
) -> MapContext:
    """The context mappers share in one run, reading items into the mappers' structs."""
    return MapContext(mappings, collected, sink, zone, MAPPERS)


__all__ = ["MAPPERS", "SCHEMAS", "MapContext", "Mapper", "mapping_context"]
