from __future__ import annotations

import pytest

from fhir_hcc.analysis import AnalysisResult, analyze

from .reference import reference_cohort
from .rscript import R_VERSIONS_USED


@pytest.fixture(scope="session")
def reference_result() -> AnalysisResult:
    """The default analysis of the 49-patient reference cohort (shared: fitting takes a while)."""
    return analyze(reference_cohort(), flow={"Patients with HCC": 57, "Analysed": 49})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Record which R the cross-checks ran against (their skip reason shows with -ra)."""
    for line in sorted(set(R_VERSIONS_USED)):
        terminalreporter.write_line(f"R cross-checks ran against {line}")
