"""Case-list pulls through the EHR emulator (Epic's rules, then Oracle Health's) in front of the
session's SEKMET server: the cohort equals the one built from the files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from fhir_hcc.cli import main
from fhir_hcc.errors import ExitCode
from fhir_hcc.fhir.types import COHORT_TYPES
from integration.conftest import LoadedServer
from integration.ehr_emulator import EhrEmulator
from integration.fault_proxy import FaultProxy

pytestmark = pytest.mark.integration

MRN_SYSTEM = "https://fhir-hcc.example/sid/synthetic-mrn"
VENDORS = {"epic": "epic", "oracle": "oracle-health"}  # emulated vendor -> the profile it gets


@pytest.fixture(scope="module")
def files_cohort(
    fhir_server: LoadedServer, tmp_path_factory: pytest.TempPathFactory
) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("files") / "cohort.csv"
    assert main(["-q", "cohort", str(fhir_server.data_dir), "--out", str(out)]) == 0
    return pd.read_csv(out)


@pytest.fixture(scope="module")
def lists(fhir_server: LoadedServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every patient of the fixtures (in and outside the cohort), plus one the server lacks,
    a comment, a blank line and a repeat, as ids; and as bare MRNs."""
    folder = tmp_path_factory.mktemp("lists")
    patients = sorted(rid for kind, rid in fhir_server.resources if kind == "Patient")
    ids = folder / "ids.txt"
    ids.write_text("# tumour registry export\n" + "\n".join([*patients, "", "ZZ99", patients[0]]))
    mrns = folder / "mrns.txt"
    mrns.write_text("\n".join([f"SYN-{p}" for p in patients] + ["SYN-ZZ99"]) + "\n")
    return {"ids": ids, "mrns": mrns}


@pytest.fixture(scope="module", params=sorted(VENDORS))
def emulator(
    request: pytest.FixtureRequest, fhir_server: LoadedServer, tmp_path_factory
) -> Iterator[EhrEmulator]:
    work = tmp_path_factory.mktemp(f"emulator-{request.param}")
    with EhrEmulator(fhir_server.origin, work, vendor=request.param) as running:
        running.vendor = request.param  # type: ignore[attr-defined]
        yield running


def cohort(base_url: str, out: Path, *flags: str) -> int:
    return main(["-q", "cohort", base_url, "--out", str(out / "cohort.csv"),
                 "--flow", str(out / "flow.json"), "--page-size", "500", *flags])  # fmt: skip


def test_patient_ids_give_the_file_cohort(
    emulator, fhir_server, files_cohort, lists, tmp_path, monkeypatch
):
    monkeypatch.setenv("FHIR_HCC_EPIC_CLIENT_ID", "emulated-client")
    base = emulator.base_url(fhir_server.base_url)
    assert cohort(base, tmp_path, "--patients", str(lists["ids"])) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cohort.csv"), files_cohort)
    case_list = json.loads((tmp_path / "flow.json").read_text())["input"]["case_list"]
    assert case_list | {"entries": None} == {
        "kind": "patients", "entries": None, "patients": 58, "unknown": 0, "ambiguous": 0,
        "bad_lines": 0, "repeated_lines": 1, "merged": 0, "not_on_server": 1,
    }  # fmt: skip
    assert case_list["entries"] == 58


def test_identifiers_give_the_file_cohort_and_no_request_is_refused_or_wasted(
    emulator, fhir_server, files_cohort, lists, tmp_path, monkeypatch
):
    """Through the emulator's profile the plan meets every rule: the emulator refused nothing,
    and every type asked for is one the mappers read."""
    monkeypatch.setenv("FHIR_HCC_EPIC_CLIENT_ID", "emulated-client")
    flags = ["--identifiers", str(lists["mrns"]), "--identifier-system", MRN_SYSTEM]
    with EhrEmulator(fhir_server.origin, tmp_path, vendor=emulator.vendor) as counted:
        assert cohort(counted.base_url(fhir_server.base_url), tmp_path, *flags) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cohort.csv"), files_cohort)
    case_list = json.loads((tmp_path / "flow.json").read_text())["input"]["case_list"]
    assert (case_list["patients"], case_list["unknown"]) == (57, 1)
    refused = {key: n for key, n in counted.counts.items() if key.startswith("refused")}
    assert refused == {}
    asked = {key.split()[1] for key in counted.counts if key.startswith("requests ")}
    assert asked - {"metadata"} <= set(COHORT_TYPES)
    # Every request after the CapabilityStatement (which names the profile) carries the header.
    after_metadata = sum(n for key, n in counted.counts.items() if key.startswith("requests")) - 1
    expected = after_metadata if emulator.vendor == "epic" else 0
    assert counted.counts["header Epic-Client-ID"] == expected


def test_without_a_list_the_pull_stops_and_names_the_options(
    emulator, fhir_server, tmp_path, capsys
):
    base = emulator.base_url(fhir_server.base_url)
    assert cohort(base, tmp_path / "out") == ExitCode.BAD_INPUT
    error = capsys.readouterr().err
    assert "give the starting population with --patients FILE" in error
    assert "--identifiers FILE" in error and "--group ID" in error
    assert "Traceback" not in error
    assert not (tmp_path / "out" / "cohort.csv").exists()


def test_a_generic_profile_learns_once_per_type(fhir_server, files_cohort, lists, tmp_path):
    """Forced to the generic profile, the pull meets Epic's refusals: each form is refused once
    per type (a list, then POST), and then one patient per search gives the same cohort."""
    with EhrEmulator(fhir_server.origin, tmp_path, vendor="epic") as counted:
        base = counted.base_url(fhir_server.base_url)
        flags = ["--patients", str(lists["ids"]), "--profile", "generic", "--page-size", "50"]
        assert cohort(base, tmp_path, *flags) == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cohort.csv"), files_cohort)
    refused = {key: n for key, n in counted.counts.items() if key.startswith("refused")}
    assert refused and set(refused.values()) == {1}, refused


def test_faults_in_front_of_the_emulator_give_the_cohort_or_fail_loudly(
    fhir_server, files_cohort, lists, tmp_path
):
    faults = {"seed": 3, "fault_rate": 0.2, "max_faults": 40}
    with (
        EhrEmulator(fhir_server.origin, tmp_path, vendor="epic") as emulator,
        FaultProxy(emulator.origin, tmp_path, **faults) as proxy,
    ):
        base = proxy.base_url(emulator.base_url(fhir_server.base_url))
        flags = ["--patients", str(lists["ids"]), "--retries", "8", "--timeout", "2"]
        code = cohort(base, tmp_path, *flags)
    assert sum(proxy.injected.values()) >= 10, proxy.injected
    if code != 0:  # loud is acceptable; a different cohort is not
        assert not (tmp_path / "cohort.csv").exists()
        return
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cohort.csv"), files_cohort)


def test_doctor_explains_the_profile_and_the_plan(emulator, fhir_server, lists, capsys):
    base = emulator.base_url(fhir_server.base_url)
    assert main(["doctor", base, "--patients", str(lists["ids"])]) == 0
    text = capsys.readouterr().out
    assert f"profile       {VENDORS[emulator.vendor]}:" in text
    assert "population search     no" in text
    assert "per patient:" in text and "Patient (read)" in text
    assert "requests: about" in text and "for 58 patients" in text
    assert main(["doctor", base]) == ExitCode.BAD_INPUT
    assert "a pull needs a case list" in capsys.readouterr().out
