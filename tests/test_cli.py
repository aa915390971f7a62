"""The command line: outputs written, exit codes, one-line errors and no tracebacks."""

import argparse
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pytest
from interpreter import python_output

from fhir_hcc import __version__
from fhir_hcc.cli import COMMANDS, main, parse
from fhir_hcc.cli.arguments import add_client_arguments, client_options
from fhir_hcc.cohort import COLUMNS, QC_COLUMNS
from fhir_hcc.errors import ExitCode
from fhir_hcc.server.options import ClientOptions

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "salvage2004"


def test_cohort_writes_table_flow_and_qc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, flow, qc = tmp_path / "cohort.csv", tmp_path / "flow.json", tmp_path / "qc.csv"
    assert (
        main(["cohort", str(FIXTURES), "--out", str(out), "--flow", str(flow), "--qc", str(qc)])
        == 0
    )
    table = pd.read_csv(out, dtype={"patient_id": str})
    assert tuple(table.columns[: len(COLUMNS)]) == COLUMNS and len(table) == 49
    assert json.loads(flow.read_text())["included"] == 49
    assert tuple(pd.read_csv(qc).columns) == QC_COLUMNS
    assert "included" in capsys.readouterr().err


def test_parquet_output_has_proper_types(tmp_path: Path) -> None:
    out = tmp_path / "cohort.parquet"
    assert main(["cohort", str(FIXTURES), "--out", str(out)]) == 0
    table = pd.read_parquet(out)
    assert tuple(table.columns[: len(COLUMNS)]) == COLUMNS
    assert str(table["age_at_surgery"].dtype) == "Int64"
    assert str(table["os_event"].dtype) == "int64"
    assert str(table["treatment_group"].dtype) == "category"
    assert type(table["surgery_date"].iloc[0]).__name__ == "date"


def test_bad_input_counts_by_default_and_stops_with_strict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "data"
    source.mkdir()
    (source / "Observation.ndjson").write_text(
        '{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},'
        '"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2000-01-01"}\n'
        '{"resourceType":"Observation","id":"o2","status":"fin\n'
    )
    out = tmp_path / "cohort.csv"
    flow = tmp_path / "flow.json"
    assert main(["cohort", str(source), "--out", str(out), "--flow", str(flow)]) == 0
    assert json.loads(flow.read_text())["input"]["problems"] == 1
    capsys.readouterr()
    assert main(["cohort", str(source), "--out", str(out), "--strict"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith(f"fhir-hcc: error: {source}/Observation.ndjson:2: malformed JSON")


def test_strict_validates_against_r4b(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "patient.json"
    bad.write_text('{"resourceType":"Patient","id":"p9","birthDate":"not-a-date"}')
    assert main(["cohort", str(bad), "--out", str(tmp_path / "c.csv"), "--strict"]) == 2
    assert f"{bad}: Patient/p9: birthDate:" in capsys.readouterr().err


def test_strict_without_the_validate_extra_names_it(tmp_path: Path) -> None:
    patient = tmp_path / "patient.json"
    patient.write_text('{"resourceType":"Patient","id":"p9","birthDate":"1950-01-01"}')
    code = (  # as after a plain `pip install fhir-hcc`: no fhir.resources, no pydantic
        "import sys; sys.modules['fhir'] = sys.modules['pydantic'] = None\n"
        "from fhir_hcc.cli import main\n"
        f"sys.exit(main(['cohort', {str(patient)!r}, '--out', {str(tmp_path / 'c.csv')!r}, "
        "'--strict']))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == ExitCode.BAD_INPUT
    assert run.stderr.splitlines() == [
        "fhir-hcc: error: validating FHIR R4 structure (--strict) needs fhir.resources, which a "
        "plain install leaves out: pip install 'fhir-hcc[validate]'"
    ]


def test_missing_source_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cohort", str(tmp_path / "nope"), "--out", str(tmp_path / "c.csv")]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"fhir-hcc: error: {tmp_path / 'nope'}: no such file or directory"
    )


def test_explain_shows_steps_fields_and_sources(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(FIXTURES), "P18"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Patient/P18: INCLUDED")
    assert "resected_after_downstaging: resection on 1998-09-13 (Procedure/P18-resection)" in text
    assert "age_under_18" in text
    assert main(["explain", str(FIXTURES), "N04"]) == 0
    assert "EXCLUDED: non-HCC primary liver cancer" in capsys.readouterr().out
    assert main(["explain", str(FIXTURES), "NOBODY"]) == 2


def test_help_imports_no_command_module_and_no_pandas() -> None:
    code = (
        "import sys\n"
        "from fhir_hcc.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(*sorted(m for m in sys.modules if m.startswith(('fhir_hcc', 'pandas'))))"
    )
    output = python_output(code)
    assert "lint-mappings" in output  # every command is listed...
    # ...from the table in fhir_hcc.cli, without loading any command or the library.
    loaded = output.splitlines()[-1].split()
    assert loaded == [
        "fhir_hcc",
        "fhir_hcc._lazy",
        "fhir_hcc.cli",
        "fhir_hcc.cli.arguments",
        "fhir_hcc.errors",
    ]


def test_every_command_module_is_listed_and_its_help_works(
    capsys: pytest.CaptureFixture[str],
) -> None:
    modules = {path.stem for path in (ROOT / "fhir_hcc" / "cli").glob("*.py")}
    assert {module for module, _ in COMMANDS.values()} == modules - {"__init__", "arguments"}
    for name in COMMANDS:
        with pytest.raises(SystemExit) as leaving:
            main([name, "--help"])
        assert leaving.value.code == 0
        assert f"usage: fhir-hcc {name} [-h] [-v | -q]" in capsys.readouterr().out


def test_version_and_python_dash_m() -> None:
    output = subprocess.run(
        [sys.executable, "-m", "fhir_hcc", "--version"], capture_output=True, text=True, check=True
    )
    assert output.stdout == f"fhir-hcc {version('fhir-hcc')}\n" == f"fhir-hcc {__version__}\n"


@pytest.mark.parametrize(
    ("argv", "verbose", "quiet"),
    [
        (["-v", "cohort", "data", "--out", "c.csv"], True, False),
        (["cohort", "data", "--out", "c.csv", "--verbose"], True, False),
        (["cohort", "-q", "data", "--out", "c.csv"], False, True),
        (["--quiet", "registry", "status"], False, True),
        (["registry", "status", "-q"], False, True),
        (["cohort", "data", "--out", "c.csv"], False, False),
    ],
)
def test_verbose_and_quiet_are_taken_before_or_after_the_command(
    argv: list[str], verbose: bool, quiet: bool
) -> None:
    args = parse(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


@pytest.mark.parametrize(
    "argv", [["-v", "registry", "status", "-q"], ["registry", "--quiet", "status", "--verbose"]]
)
def test_verbose_and_quiet_together_are_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as leaving:
        parse(argv)
    assert leaving.value.code == ExitCode.BAD_INPUT
    assert "-v/--verbose and -q/--quiet exclude each other" in capsys.readouterr().err


def test_quiet_leaves_only_errors(tmp_path: Path) -> None:
    source = tmp_path / "data"
    source.mkdir()
    (source / "broken.ndjson").write_text('{"resourceType": "Patient", "id": \n')

    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        command = ["cohort", str(source), "--out", str(tmp_path / "c.csv"), *flags]
        return subprocess.run(
            [sys.executable, "-m", "fhir_hcc", *command], capture_output=True, text=True
        )

    talkative = run()
    assert talkative.returncode == 0
    assert "broken.ndjson:1: malformed JSON" in talkative.stderr
    assert "input problems: 1" in talkative.stderr
    quiet = run("-q")
    assert (quiet.returncode, quiet.stderr) == (0, "")


def test_readme_lists_every_exit_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Exit codes\n", 1)[1].split("\n## ", 1)[0]
    cells = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("|")]
    assert [int(cell) for cell in cells if cell.isdigit()] == [int(code) for code in ExitCode]


def test_flags_override_the_environment() -> None:
    parser = argparse.ArgumentParser()
    add_client_arguments(parser)
    args = parser.parse_args(
        ["--auth", "bearer", "--token-file", "/run/token", "--batch-size", "10", "--lenient"]
    )
    options = client_options(args, {"FHIR_HCC_AUTH": "basic", "FHIR_HCC_BATCH_SIZE": "30"})
    assert options.auth.mode == "bearer"
    assert options.auth.token_file == Path("/run/token")
    assert options.batch_size == 10
    assert options.strict_handling is False
    assert client_options(parser.parse_args([]), {}) == ClientOptions()


def test_no_flag_takes_a_secret_value() -> None:
    parser = argparse.ArgumentParser()
    add_client_arguments(parser)
    flags = {action.dest for action in parser._actions}
    assert not flags & {"token", "password", "client_secret", "private_key"}


def test_search_outcome_is_a_warning_even_when_strict(tmp_path: Path) -> None:
    bundle = tmp_path / "searchset.json"
    bundle.write_text(
        '{"resourceType": "Bundle", "type": "searchset", "entry": ['
        '{"search": {"mode": "match"}, "resource": {"resourceType": "Patient", "id": "p1"}},'
        '{"search": {"mode": "outcome"}, "resource": {"resourceType": "OperationOutcome",'
        '"issue": [{"severity": "warning", "code": "not-supported"}]}}]}'
    )
    flow = tmp_path / "flow.json"
    assert (
        main(
            [
                "cohort",
                str(bundle),
                "--out",
                str(tmp_path / "c.csv"),
                "--flow",
                str(flow),
                "--strict",
            ]
        )
        == 0
    )
    counts = json.loads(flow.read_text())["input"]
    assert (counts["problems"], counts["warnings"]) == (0, 1)


def test_run_writes_cohort_report_and_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["run", str(FIXTURES), "--out-dir", str(out)]) == 0
    written = {path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()}
    assert {
        "cohort.csv",
        "flow.json",
        "qc.csv",
        "report.json",
        "report.html",
        "report.md",
    } <= written
    assert "figures/overall_survival.png" in written
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 49
    assert report["overall_survival"]["at_months"]["60"]["estimate"] == pytest.approx(
        0.5728, abs=1e-4
    )
    printed = capsys.readouterr().out
    assert "n = 49" in printed
    assert "1y 98.0%, 3y 64.2%, 5y 57.3%; median 85.9 (95% CI 35.5 to not reached)" in printed


def test_analyze_is_exposed_lazily() -> None:
    code = (
        "import sys, fhir_hcc; before = 'lifelines' in sys.modules; fhir_hcc.analyze; "
        "print(before, 'lifelines' in sys.modules or 'fhir_hcc.analysis' in sys.modules)"
    )
    assert python_output(code).split() == ["False", "True"]
