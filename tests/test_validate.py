"""The mapping test-case runner itself: loading, diffs with source resources, outcomes, the CLI.

Cases are written to tmp_path on top of the shared standard patient of fixtures/edge-cases, whose
cohort row is known (patients/standard-patient-full-row.yaml).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fhir_hcc.cli import main
from fhir_hcc.validate import (
    SHIPPED_CASES,
    CaseError,
    find_cases,
    format_result,
    load_case,
    run_case,
    summary,
    validate_paths,
)

EDGE_CASES = Path(__file__).resolve().parent.parent / "fixtures" / "edge-cases"
BASE = EDGE_CASES / "_base" / "standard-patient.yaml"
LOCAL_HBSAG = """
resources:
  - resourceType: Observation
    id: hbsag
    status: final
    code:
      coding: [{system: "https://lab.hospital.example/codes", code: HBSAG-EIA}]
    subject: {reference: Patient/p1}
    effectiveDateTime: "1996-01-16"
    valueCodeableConcept:
      coding: [{system: "http://loinc.org", code: LA6576-8}]
expect:
  rows:
    p1: {hbv_status: positive}
"""
SITE_SYSTEMS = """
[[systems]]
name = "Hospital laboratory codes"
canonical = "https://lab.hospital.example/codes"
aliases = []
normalise = "upper"
check = ""
"""
SITE_HEPATITIS_B = """
concept = "hepatitis_b"
[[codes]]
system = "https://lab.hospital.example/codes"
code = "HBSAG-EIA"
class = "hbsag_test"
display = "HBsAg EIA (local)"
status = "rule"
source = "site laboratory catalogue"
"""


def write_case(directory: Path, body: str, name: str = "case.yaml", base: bool = True) -> Path:
    header = f"title: a test case\nbase: {BASE}\n" if base else "title: a test case\n"
    path = directory / name
    path.write_text(header + body, encoding="utf-8")
    return path


def run(path: Path):
    return run_case(load_case(path))


# -- diffs ----------------------------------------------------------------------------------------


def test_a_true_expectation_passes(tmp_path: Path) -> None:
    result = run(write_case(tmp_path, "expect:\n  rows:\n    p1: {hbv_status: positive}\n"))
    assert (result.outcome, result.mismatches) == ("pass", [])


def test_wrong_values_are_diffed_field_by_field_with_their_source_resources(
    tmp_path: Path,
) -> None:
    body = """
expect:
  rows:
    p1: {hbv_status: negative, resection_extent: major, surgery_date: "1996-06-04"}
"""
    result = run(write_case(tmp_path, body))
    assert result.outcome == "fail"
    diff = {m.subject: (m.expected, m.actual, m.sources) for m in result.mismatches}
    assert diff == {
        "p1.hbv_status": ("negative", "positive", ("Observation/hbsag",)),
        "p1.surgery_date": ("1996-06-04", "1996-06-03", ("Procedure/resection",)),
    }
    text = format_result(result)
    assert "- p1.hbv_status: expected 'negative', got 'positive'  <- Observation/hbsag" in text
    assert "step: resected_after_downstaging: resection on 1996-06-03 (Procedure/resection)" in text


def test_an_included_patient_expected_excluded_shows_the_derivation(tmp_path: Path) -> None:
    result = run(write_case(tmp_path, "expect:\n  excluded:\n    p1: non-HCC\n"))
    [mismatch] = result.mismatches
    assert (mismatch.subject, mismatch.actual) == ("p1", "included")
    steps = result.context["p1"]
    assert any(line.startswith("step: with_hcc: HCC on 1996-01-15") for line in steps)


def test_an_excluded_patient_expected_in_the_cohort_shows_stage_and_reason(tmp_path: Path) -> None:
    body = "remove: [Patient/p1]\nexpect:\n  rows:\n    p1: {sex: male}\n"
    [mismatch] = run(write_case(tmp_path, body)).mismatches
    assert mismatch.actual == (
        "excluded at 'resected_after_downstaging': no Patient resource for this patient"
    )


def test_a_patient_not_in_the_data_is_said_so(tmp_path: Path) -> None:
    [mismatch] = run(write_case(tmp_path, "expect:\n  rows:\n    p2: {sex: male}\n")).mismatches
    assert (mismatch.subject, mismatch.actual) == ("p2", "no resources for this patient")


def test_missing_and_unwanted_qc_records(tmp_path: Path) -> None:
    body = """
resources:
  - resourceType: Procedure
    id: resection-copy
    status: completed
    code: {coding: [{system: "http://www.ama-assn.org/go/cpt", code: "47130"}]}
    subject: {reference: Patient/p1}
    performedDateTime: "1996-06-03"
expect:
  qc:
    p1:
      - {rule: duplicate_collapsed, detail: same resection}
      - {rule: residual_disease}
  qc_absent:
    p1: [duplicate_collapsed]
"""
    mismatches = run(write_case(tmp_path, body)).mismatches
    assert [(m.subject, m.expected) for m in mismatches] == [
        ("p1 qc", "residual_disease"),
        ("p1 qc", "no duplicate_collapsed"),
    ]
    assert mismatches[0].actual == ["duplicate_collapsed (Procedure/resection-copy)"]
    assert mismatches[1].sources == ("Procedure/resection-copy",)


def test_input_problems_count_and_messages_name_the_file_and_line(tmp_path: Path) -> None:
    body = """
files:
  labs.ndjson: |
    {"resourceType": "Observation", "id": "cut", "status": "fi
expect:
  problems:
    count: 2
    messages: ["labs.ndjson:1: malformed JSON", "no such message"]
"""
    mismatches = run(write_case(tmp_path, body)).mismatches
    assert [m.expected for m in mismatches] == [
        "2 input problem(s)",
        "a problem containing 'no such message'",
    ]
    assert mismatches[0].actual == ["labs.ndjson:1: malformed JSON (unexpected end of data)"]


def test_flow_is_compared_as_a_subset(tmp_path: Path) -> None:
    body = "expect:\n  flow:\n    included: 1\n    input: {problems: 1, nothing_here: 0}\n"
    mismatches = run(write_case(tmp_path, body)).mismatches
    assert [(m.subject, m.expected, m.actual) for m in mismatches] == [
        ("flow.input.problems", 1, 0),
        ("flow.input.nothing_here", 0, "missing"),
    ]


def test_strict_error_must_be_raised_and_contain_the_texts(tmp_path: Path) -> None:
    body = """
files:
  broken.json: '{"resourceType":'
expect:
  strict_error: [broken.json, malformed JSON]
"""
    assert run(write_case(tmp_path, body)).outcome == "pass"
    wrong = body.replace("[broken.json, malformed JSON]", "[broken.json, line 7]")
    [mismatch] = run(write_case(tmp_path, wrong)).mismatches
    assert mismatch.subject == "strict"
    assert mismatch.actual == "broken.json: malformed JSON (unexpected end of data)"
    quiet = "expect:\n  strict_error: anything\n"
    [mismatch] = run(write_case(tmp_path, quiet)).mismatches
    assert mismatch.actual == "no error"


@pytest.mark.parametrize(
    ("written", "passes"),
    [("41.92", True), ("41.9", True), ("41.921971", True), ("41.93", False), ("42", False)],
)
def test_numbers_are_compared_at_the_precision_written(
    tmp_path: Path, written: str, passes: bool
) -> None:
    result = run(write_case(tmp_path, f"expect:\n  rows:\n    p1: {{os_months: {written}}}\n"))
    assert (result.outcome == "pass") is passes


def test_null_matches_an_empty_cell_and_dates_stay_text(tmp_path: Path) -> None:
    body = "expect:\n  rows:\n    p1: {death_date: null, surgery_date: 1996-06-03, death: no}\n"
    assert run(write_case(tmp_path, body)).outcome == "pass"


# -- xfail ----------------------------------------------------------------------------------------


def test_xfail_is_an_expected_failure_while_failing_and_xpass_once_fixed(tmp_path: Path) -> None:
    failing = run(write_case(tmp_path, 'xfail: "known"\nexpect:\n  rows:\n    p1: {sex: female}\n'))
    assert (failing.outcome, failing.ok) == ("xfail", True)
    assert "known discrepancy: known" in format_result(failing)
    fixed = run(write_case(tmp_path, 'xfail: "known"\nexpect:\n  rows:\n    p1: {sex: male}\n'))
    assert (fixed.outcome, fixed.ok) == ("xpass", False)
    assert "remove the mark" in format_result(fixed)


# -- loading --------------------------------------------------------------------------------------


def test_case_resources_replace_base_resources_of_the_same_type_and_id(tmp_path: Path) -> None:
    body = """
remove: [Observation/afp-baseline]
resources:
  - {resourceType: Observation, id: hbsag, status: final, code: {text: replaced}}
  - {resourceType: Observation, id: extra, status: final, code: {text: added}}
expect:
  flow: {included: 1}
"""
    case = load_case(write_case(tmp_path, body))
    base = load_case(EDGE_CASES / "patients" / "standard-patient-full-row.yaml")
    references = [f"{r['resourceType']}/{r['id']}" for r in case.resources]
    assert len(case.resources) == len(base.resources)
    assert references.index("Observation/hbsag") == 2
    assert "Observation/afp-baseline" not in references
    assert references[-1] == "Observation/extra"
    assert case.resources[2]["code"] == {"text": "replaced"}


def test_a_json_case_with_a_source_file(tmp_path: Path) -> None:
    data = tmp_path / "_data"
    data.mkdir()
    lines = [
        '{"resourceType": "Patient", "id": "q1", "gender": "female"}',
        '{"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/q1"}, '
        '"code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C22.2"}]}, '
        '"onsetDateTime": "1999-01-01"}',
    ]
    (data / "q1.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    path = tmp_path / "case.json"
    path.write_text(
        '{"title": "json", "source": "_data/q1.ndjson", "expect": {"excluded": {"q1": "non-HCC"}}}',
        encoding="utf-8",
    )
    assert run(path).outcome == "pass"
    assert find_cases([tmp_path]) == [path]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("expect: {rows: {p1: {sex: [male}}\n", "not valid YAML"),
        ("expect: {rows: {p1: {sex: male}}}\ncolour: red\n", "colour: unknown key"),
        ("expect: {rowz: {p1: {sex: male}}}\n", "expect.rowz: unknown key"),
        ("expect: {rows: {p1: {hbv: positive}}}\n", "expect.rows.p1.hbv: not a cohort column"),
        ("expect: {}\n", "expect: required"),
        ("expect: {problems: {count: -1}}\n", "expect.problems.count"),
        ("expect: {qc: {p1: [{source: Patient/p1}]}}\n", "expect.qc.p1: a QC expectation needs"),
        ("remove: [Patient/p9]\nexpect: {absent: [p9]}\n", "remove: Patient/p9 is not a resource"),
        ("config: {cutof: 2003-01-01}\nexpect: {absent: [p9]}\n", "config: [cohort] cutof"),
        ("files: {notes.txt: x}\nexpect: {absent: [p9]}\n", "files: notes.txt"),
        ("files: {../x.json: x}\nexpect: {absent: [p9]}\n", "expected a plain file name"),
        ("source: nowhere.ndjson\nexpect: {absent: [p9]}\n", "source: nowhere.ndjson not found"),
        ("invalid_fhir: {Patient/p9: r5}\nexpect: {absent: [p9]}\n", "invalid_fhir: Patient/p9"),
        ("resources: {id: x}\nexpect: {absent: [p9]}\n", "resources: expected a list"),
    ],
)
def test_a_bad_case_file_gives_one_line_naming_the_file_and_key(
    tmp_path: Path, body: str, message: str
) -> None:
    path = write_case(tmp_path, body)
    with pytest.raises(CaseError) as caught:
        load_case(path)
    text = str(caught.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_a_case_without_title_or_with_a_missing_or_circular_base(tmp_path: Path) -> None:
    untitled = tmp_path / "untitled.yaml"
    untitled.write_text("expect: {absent: [p9]}\n", encoding="utf-8")
    with pytest.raises(CaseError, match="title: expected a non-empty text"):
        load_case(untitled)
    orphan = write_case(tmp_path, "base: gone.yaml\nexpect: {absent: [p9]}\n", base=False)
    with pytest.raises(CaseError, match=r"base: gone\.yaml not found"):
        load_case(orphan)
    loop = write_case(tmp_path, "base: case.yaml\nexpect: {absent: [p9]}\n", base=False)
    with pytest.raises(CaseError, match="refers back to itself"):
        load_case(loop)


def test_finding_cases_skips_underscore_folders_and_refuses_nothing(tmp_path: Path) -> None:
    (tmp_path / "_base").mkdir()
    (tmp_path / "_base" / "patient.yaml").write_text("resources: []\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a case\n", encoding="utf-8")
    with pytest.raises(CaseError, match="no case files"):
        find_cases([tmp_path])
    with pytest.raises(CaseError, match="no such case file or directory"):
        find_cases([tmp_path / "missing"])
    case = write_case(tmp_path, "expect: {absent: [p9]}\n")
    assert find_cases([tmp_path]) == [case]


def test_validate_paths_reports_unusable_files_and_counts_outcomes(tmp_path: Path) -> None:
    write_case(tmp_path, "expect: {rows: {p1: {sex: male}}}\n", name="a-pass.yaml")
    write_case(tmp_path, "expect: {rows: {p1: {sex: female}}}\n", name="b-fail.yaml")
    write_case(tmp_path, "expect: {rowz: {}}\n", name="c-bad.yaml")
    results = validate_paths([tmp_path])
    assert [r.outcome for r in results] == ["pass", "fail", "error"]
    assert format_result(results[2]).startswith(f"ERROR  {tmp_path / 'c-bad.yaml'}: expect.rowz")
    assert summary(results) == (
        "3 case(s): 1 passed, 1 failed, 0 expected failure(s), 0 unexpectedly passed, 1 unusable"
    )


# -- CLI ------------------------------------------------------------------------------------------


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    passing = write_case(tmp_path, "expect: {rows: {p1: {sex: male}}}\n", name="pass.yaml")
    assert main(["validate", str(passing)]) == 0
    assert capsys.readouterr().out.startswith(f"PASS   {passing}  a test case\n")

    failing = write_case(tmp_path, "expect: {rows: {p1: {sex: female}}}\n", name="fail.yaml")
    assert main(["validate", str(passing), str(failing)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL   {failing}" in out and "- p1.sex: expected 'female', got 'male'" in out
    assert "  <- Patient/p1" in out

    unusable = write_case(tmp_path, "expect: {rows: {p1: {gender: male}}}\n", name="bad.yaml")
    assert main(["validate", str(unusable)]) == 1
    assert "ERROR" in capsys.readouterr().out

    assert main(["validate", str(tmp_path / "missing")]) == 2
    assert "no such case file or directory" in capsys.readouterr().err


def test_cli_site_mappings_turn_a_failing_local_code_case_into_a_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = write_case(tmp_path, LOCAL_HBSAG)
    assert main(["validate", str(case)]) == 1
    assert "- p1.hbv_status: expected 'positive', got 'unknown'" in capsys.readouterr().out

    site = tmp_path / "site-maps"
    site.mkdir()
    (site / "systems.toml").write_text(SITE_SYSTEMS, encoding="utf-8")
    (site / "hepatitis_b.toml").write_text(SITE_HEPATITIS_B, encoding="utf-8")
    assert main(["validate", str(case), "--mappings", str(site)]) == 0
    assert capsys.readouterr().out.startswith("PASS")

    assert main(["validate", str(case), "--mappings", str(tmp_path / "nowhere")]) == 2
    assert "mapping directory not found" in capsys.readouterr().err


def test_cli_default_is_the_shipped_cases_wherever_it_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert SHIPPED_CASES == EDGE_CASES  # in a checkout, fhir_hcc/shipped_cases links to them
    monkeypatch.chdir(tmp_path)  # not the checkout: no repository-relative folder is looked for
    assert main(["validate"]) == 0
    lines = capsys.readouterr().out.splitlines()
    count = len(find_cases([EDGE_CASES]))
    assert sum(line.startswith(f"PASS   {EDGE_CASES}{os.sep}") for line in lines) == count
    assert lines[-1].startswith(f"{count} case(s): {count} passed, 0 failed")


def test_a_strict_expectation_without_the_validate_extra_is_not_all_checked() -> None:
    case = EDGE_CASES / "input" / "truncated-ndjson-line.yaml"  # valid resources first
    code = (  # as after a plain `pip install fhir-hcc`: no fhir.resources, no pydantic
        "import sys; sys.modules['fhir'] = sys.modules['pydantic'] = None\n"
        f"from fhir_hcc.cli import main; sys.exit(main(['validate', {str(case)!r}]))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    first, reason, total = run.stdout.splitlines()
    assert first.startswith(f"SKIP   {case}  ")
    assert reason.endswith(
        "needs fhir.resources, which a plain install leaves out: pip install 'fhir-hcc[validate]'"
    )
    assert total.endswith(", 1 not all checked (an optional extra is missing: see above)")
