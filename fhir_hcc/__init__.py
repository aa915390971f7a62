"""fhir-hcc: salvage-surgery HCC cohorts and their survival analysis from FHIR R4 data.

>>> import fhir_hcc
>>> result = fhir_hcc.build_cohort("fixtures/salvage2004")
>>> result.table.head()          # one row per included patient (the cohort contract)
>>> result.flow["steps"]         # CONSORT/STROBE counts
>>> result.qc                    # every data-quality decision
>>> report = fhir_hcc.analyze(result.table)   # survival, recurrence, group comparisons
>>> report.to_html()
"""

from typing import Any

from fhir_hcc.cohort import COLUMNS, CohortResult, build_cohort
from fhir_hcc.config import CohortConfig, load_config
from fhir_hcc.inputs import open_source
from fhir_hcc.mappings import Mappings, load_mappings
from fhir_hcc.sources import FileSource, Origin, Source

__version__ = "0.1.0"

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


def __getattr__(name: str) -> Any:
    # The analysis stage imports lifelines and scipy (seconds): load it on first use only.
    if name == "analyze":
        from fhir_hcc.analysis import analyze

        return analyze
    raise AttributeError(f"module 'fhir_hcc' has no attribute {name!r}")
