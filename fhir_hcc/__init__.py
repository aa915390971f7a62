"""fhir-hcc: salvage-surgery HCC cohorts and their survival analysis from FHIR R4 data.

>>> import fhir_hcc
>>> result = fhir_hcc.build_cohort("fixtures/salvage2004")
>>> result.table.head()          # one row per included patient (the cohort contract)
>>> result.flow["steps"]         # CONSORT/STROBE counts
>>> result.qc                    # every data-quality decision
>>> report = fhir_hcc.analyze(result.table)   # survival, recurrence, group comparisons
>>> report.to_html()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_hcc._lazy import lazy_exports

__version__ = "0.1.0"

# Public name -> the module that defines it. Each is imported on first use: the cohort stage
# loads pandas and the analysis lifelines and scipy (seconds), which `import fhir_hcc` and
# `fhir-hcc --help` need not pay for.
_HOMES = {
    "COLUMNS": "fhir_hcc.cohort",
    "CohortConfig": "fhir_hcc.config",
    "CohortResult": "fhir_hcc.cohort",
    "FileSource": "fhir_hcc.sources",
    "Mappings": "fhir_hcc.mappings",
    "Origin": "fhir_hcc.sources",
    "Source": "fhir_hcc.sources",
    "analyze": "fhir_hcc.analysis",
    "build_cohort": "fhir_hcc.cohort",
    "load_config": "fhir_hcc.config",
    "load_mappings": "fhir_hcc.mappings",
    "open_source": "fhir_hcc.inputs",
}

__all__ = [
    "COLUMNS",
    "CohortConfig",
    "CohortResult",
    "FileSource",
    "Mappings",
    "Origin",
    "Source",
    "__version__",
    "analyze",
    "build_cohort",
    "load_config",
    "load_mappings",
    "open_source",
]

if TYPE_CHECKING:
    from fhir_hcc.analysis import analyze
    from fhir_hcc.cohort import COLUMNS, CohortResult, build_cohort
    from fhir_hcc.config import CohortConfig, load_config
    from fhir_hcc.inputs import open_source
    from fhir_hcc.mappings import Mappings, load_mappings
    from fhir_hcc.sources import FileSource, Origin, Source


__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
