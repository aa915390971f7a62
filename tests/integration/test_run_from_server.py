"""`fhir-hcc run URL --out-dir` against SEKMET loaded with the reference fixtures: the reference
cohort and report, identical to the run on the files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fhir_hcc.cli import main

pytestmark = pytest.mark.integration


def test_run_from_server_gives_the_reference_cohort_and_report(fhir_server, tmp_path: Path) -> None:
    from_server, from_files = tmp_path / "server", tmp_path / "files"
    arguments = ["--out-dir", str(from_server), "--pull-dir", str(tmp_path / "pulled")]
    assert main(["run", fhir_server.base_url, *arguments]) == 0
    assert main(["run", str(fhir_server.data_dir), "--out-dir", str(from_files)]) == 0
    server_table = pd.read_csv(from_server / "cohort.csv")
    files_table = pd.read_csv(from_files / "cohort.csv")
    pd.testing.assert_frame_equal(server_table, files_table)
    report = json.loads((from_server / "report.json").read_text())
    assert report["n"] == 49
    survival = report["overall_survival"]
    estimates = [survival["at_months"][m]["estimate"] for m in ("12", "36", "60")]
    assert estimates == pytest.approx([0.9796, 0.6418, 0.5728], abs=1e-4)
    assert survival["median_months"] == pytest.approx(85.9, abs=0.05)
    assert (tmp_path / "pulled" / "manifest.json").is_file()
