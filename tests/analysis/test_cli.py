"""`fhir-hcc analyze`: files written, one-line errors, and a fast `--help`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pytest import approx

from fhir_hcc.analysis.labels import FIGURES
from fhir_hcc.cli import main

from .reference import reference_cohort

ROOT = Path(__file__).resolve().parents[2]


def test_writes_json_html_markdown_and_figures(tmp_path):
    cohort = tmp_path / "cohort.csv"
    reference_cohort().to_csv(cohort, index=False)
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps({"Patients with HCC": 57, "Analysed": 49}))
    out = tmp_path / "out"
    code = main(
        [
            "analyze",
            str(cohort),
            "--out",
            str(out / "report.json"),
            "--html",
            str(out / "report.html"),
            "--markdown",
            str(out / "report.md"),
            "--plots",
            str(out / "figures"),
            "--docx",
            str(out / "report.docx"),
            "--tables",
            str(out / "tables"),
            "--flow",
            str(flow),
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 49
    assert report["overall_survival"]["at_months"]["60"]["estimate"] == approx(0.5728, abs=1e-4)
    assert report["flow"] == [
        {"step": "Patients with HCC", "n": 57, "left_out": {}},
        {"step": "Analysed", "n": 49, "left_out": {}},
    ]
    assert "(figures/overall_survival.png)" in (out / "report.md").read_text()
    for fmt in ("png", "svg", "pdf"):
        assert len(list((out / "figures").glob(f"*.{fmt}"))) == len(FIGURES), fmt
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert (out / "report.docx").read_bytes().startswith(b"PK")  # a zip: the Word format
    assert (out / "tables" / "table2_baseline_characteristics_n_49.csv").is_file()


def test_bad_cohort_is_one_line_on_stderr_and_exit_code_2(tmp_path, capsys):
    cohort = tmp_path / "cohort.csv"
    reference_cohort().drop(columns=["os_months"]).to_csv(cohort, index=False)
    code = main(["analyze", str(cohort), "--out", str(tmp_path / "report.json")])
    assert code == 2
    error = capsys.readouterr().err
    assert error == f"fhir-hcc: error: {cohort}: missing column os_months\n"
    assert not (tmp_path / "report.json").exists()


def test_flow_from_the_cohort_stage_is_shown_with_reasons(tmp_path):
    cohort = tmp_path / "cohort.csv"
    reference_cohort().to_csv(cohort, index=False)
    flow = tmp_path / "flow.json"
    steps = [
        {"step": "hcc", "n": 57, "left_out": {"no_downstaging": 8}},
        {"step": "included", "n": 49, "left_out": {}},
    ]
    flow.write_text(json.dumps({"steps": steps, "included": 49}))
    markdown = tmp_path / "report.md"
    args = ["analyze", str(cohort), "--out", str(tmp_path / "r.json"), "--flow", str(flow)]
    assert main([*args, "--markdown", str(markdown)]) == 0
    assert "| &nbsp;&nbsp;left out: no downstaging | 8 |" in markdown.read_text()


def test_malformed_flow_names_the_file(tmp_path, capsys):
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps({"steps": [{"n": 3}]}))
    args = ["analyze", "cohort.csv", "--out", str(tmp_path / "r.json"), "--flow", str(flow)]
    assert main(args) == 2
    assert capsys.readouterr().err.startswith(f"fhir-hcc: error: {flow}: flow counts: expected")


def test_analysis_settings_join_the_provenance(tmp_path):
    cohort = tmp_path / "cohort.csv"
    reference_cohort().to_csv(cohort, index=False)
    study = tmp_path / "study.toml"
    study.write_text("[analysis]\nlogrank_strata = 'hbv_status'\n")
    out = tmp_path / "report.json"
    assert main(["analyze", str(cohort), "--out", str(out), "--config", str(study)]) == 0
    provenance = json.loads(out.read_text())["provenance"]
    assert provenance["analysis_config_path"] == str(study)
    assert len(provenance["analysis_config_sha256"]) == 64


def test_importing_the_command_does_not_load_the_analysis_stack():
    code = (
        "import sys, fhir_hcc.cli.analyze; "
        "print(sorted({'lifelines', 'matplotlib', 'scipy'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_markdown_report_does_not_load_matplotlib():
    code = (
        "import sys\n"
        "from fhir_hcc.analysis import analyze\n"
        "from tests.analysis.reference import reference_cohort\n"
        "text = analyze(reference_cohort()).to_markdown()\n"
        "assert 'Table 1' in text\n"
        "print('matplotlib' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "False"
