"""Mapping test cases: FHIR resources and the cohort they must give, compared field by field.

A case is one YAML or JSON file (format: docs/validation.md): a title, the rule it shows, optional
`[cohort]` overrides, FHIR resources inline, from a file (`source:`) or as raw text (`files:`),
optionally layered over a shared `base:` patient, and `expect:` (cohort rows, exclusions, QC
rules, input problems, flow counts, the strict-mode error). `run_case` builds the cohort through
the public API and returns every difference, each naming the source resources behind the wrong
value.

`model` holds a case and its result, `load` finds and reads case files, `run` builds and
compares, `format` prints. The project's own cases ship inside the package (`SHIPPED_CASES`, the
repository's fixtures/edge-cases): `fhir-hcc validate` runs them when given no case.
"""

from fhir_hcc.validate.format import format_result, summary
from fhir_hcc.validate.load import SHIPPED_CASES, find_cases, load_case
from fhir_hcc.validate.model import (
    Case,
    CaseError,
    CaseResult,
    Expectations,
    Mismatch,
    QcExpectation,
)
from fhir_hcc.validate.run import run_case, validate_paths

__all__ = [
    "SHIPPED_CASES",
    "Case",
    "CaseError",
    "CaseResult",
    "Expectations",
    "Mismatch",
    "QcExpectation",
    "find_cases",
    "format_result",
    "load_case",
    "run_case",
    "summary",
    "validate_paths",
]
