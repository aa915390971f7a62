"""The cohort builder: patient facts -> the salvage-surgery cohort table, flow and QC."""

from fhir_hcc.cohort.build import (
    COLUMNS,
    EXTRA_COLUMNS,
    QC_COLUMNS,
    CohortResult,
    build_cohort,
    collect,
    derive_cohort,
)
from fhir_hcc.cohort.derive import FLOW_STEPS, PatientResult

__all__ = [
    "COLUMNS",
    "EXTRA_COLUMNS",
    "FLOW_STEPS",
    "QC_COLUMNS",
    "CohortResult",
    "PatientResult",
    "build_cohort",
    "collect",
    "derive_cohort",
]
