"""Every mapping test case in fixtures/edge-cases, one test each, and the FHIR validity of the
resources they hold.

A case marked `xfail:` documents a known discrepancy between the code and the spec: it is an
expected failure while it fails, and a test failure once it passes (remove the mark then).
"""

from pathlib import Path

import pytest
from case_resources import marked_invalid_resources, valid_fhir_resources

from fhir_hcc.r4b_check import validation_errors
from fhir_hcc.validate import find_cases, format_result, load_case, run_case

EDGE_CASES = Path(__file__).resolve().parent.parent / "fixtures" / "edge-cases"
CASE_FILES = find_cases([EDGE_CASES])


def _case_id(path: Path) -> str:
    return path.relative_to(EDGE_CASES).with_suffix("").as_posix()


@pytest.mark.parametrize("path", CASE_FILES, ids=_case_id)
def test_edge_case(path: Path) -> None:
    case = load_case(path)
    result = run_case(case)
    if case.xfail:
        if result.mismatches:
            pytest.xfail(case.xfail)
        pytest.fail(f"passes although marked xfail, remove the mark:\n{format_result(result)}")
    assert not result.mismatches, format_result(result)


@pytest.mark.parametrize("path", CASE_FILES, ids=_case_id)
def test_case_resources_are_valid_r4(path: Path) -> None:
    resources = valid_fhir_resources(load_case(path))
    assert resources, "a case must hold some FHIR resources"
    problems = [
        f"{label}: {where}: {message}"
        for label, resource in resources
        for where, message in validation_errors(resource)
    ]
    assert not problems, "\n".join(problems)


def test_invalid_fhir_marks_name_resources_that_really_are_invalid() -> None:
    # A stale mark would hide a valid resource from the check above.
    marked = [item for path in CASE_FILES for item in marked_invalid_resources(load_case(path))]
    assert marked, "the R5-shaped MedicationAdministration case is marked"
    assert [label for label, resource in marked if not validation_errors(resource)] == []
