"""`fhir-hcc fixtures capture` against SEKMET: nothing identifying survives, the cohort does.

A few patients of the salvage2004 fixtures are captured from the server; the test then checks
that no name, address, telecom, identifier, original id or original date is left in the bundles,
and that the cohort built from the captured bundles has the same intervals, groups and
exclusions as the cohort built from the original bundles.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from fhir_hcc import build_cohort
from fhir_hcc.capture import Deidentifier
from fhir_hcc.cli import main
from fhir_hcc.config import CohortConfig
from integration.conftest import FIXTURES, LoadedServer

pytestmark = pytest.mark.integration

PATIENTS = ("P01", "P07", "P12", "N01", "N05")
KEY = b"integration-test-capture-key-0001"
# Shifted dates leave the paper's study window: both cohorts get one wide enough for either.
WIDE = CohortConfig(
    study_start=pd.Timestamp("1900-01-01").date(),
    study_end=pd.Timestamp("2099-12-31").date(),
    cutoff=pd.Timestamp("2099-12-31").date(),
)
SAME_COLUMNS = [
    "sex", "hbv_status", "treatment_group", "resection_extent", "complete_necrosis",
    "recurrence", "recurrence_site", "death", "os_days", "os_event", "rfs_days", "rfs_event",
    "n_cycles", "max_agents_in_cycle", "sequence_order", "afp_pre_downstaging",
    "afp_pre_surgery",
]  # fmt: skip
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
REFERENCE = re.compile(r"\b([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]+)")


@pytest.fixture(scope="module")
def captured(fhir_server: LoadedServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("captured")
    key_file = out.parent / "capture.key"
    key_file.write_bytes(KEY)
    command = ["fixtures", "capture", fhir_server.base_url, "--patient", *PATIENTS]
    assert main([*command, "--out", str(out), "--key-file", str(key_file)]) == 0
    return out


def _originals(patient: str, server: LoadedServer) -> list[dict[str, Any]]:
    """The patient's resources as the file reader sees its fixture bundle."""
    prefix = f"{patient}-"
    return [
        resource
        for (resource_type, resource_id), resource in server.resources.items()
        if resource_id == patient or resource_id.startswith(prefix)
    ]


def _strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [pair for key, value in node.items() for pair in _strings(value, f"{path}.{key}")]
    if isinstance(node, list):
        return [pair for i, value in enumerate(node) for pair in _strings(value, f"{path}[{i}]")]
    return [(path, node)] if isinstance(node, str) else []


def _personal_values(patient: dict[str, Any]) -> set[str]:
    found = set()
    for key in ("name", "address", "telecom", "identifier"):
        found |= {value for _, value in _strings(patient.get(key, [])) if len(value) > 2}
    return found - {"official", "usual", "home", "phone", "work", "mobile", "email"}


def test_nothing_identifying_survives(captured: Path, fhir_server: LoadedServer) -> None:
    deidentifier = Deidentifier(KEY, fhir_server.base_url)
    for patient in PATIENTS:
        path = captured / f"{deidentifier.pseudonym('Patient', patient)}.json"
        text = path.read_text()
        originals = _originals(patient, fhir_server)
        personal = _personal_values(fhir_server.resources["Patient", patient])
        assert personal, f"{patient}: the fixture should carry a name and an identifier"
        assert not [value for value in personal if value in text]
        assert not re.search(rf"\b{patient}\b", text)  # no original id, alone or as a prefix
        bundle = orjson.loads(text)
        by_id = {entry["resource"]["id"]: entry["resource"] for entry in bundle["entry"]}
        shift = deidentifier.shift_days(patient)
        for original in originals:
            copy = by_id[deidentifier.pseudonym(original["resourceType"], original["id"])]
            moved = dict(_strings(copy))
            for where, value in _strings(original):
                if DATE.match(value) and where in moved:
                    day = pd.Timestamp(value[:10]) + pd.Timedelta(days=shift)
                    assert moved[where][:10] == f"{day:%Y-%m-%d}", (patient, where)


def _cohort(source: Path) -> tuple[pd.DataFrame, dict[str, str | None]]:
    result = build_cohort(source, WIDE)
    reasons = {pid: p.reason for pid, p in result.patients.items() if not p.included}
    return result.table.set_index("patient_id"), reasons


def test_captured_cohort_keeps_the_intervals(
    captured: Path, fhir_server: LoadedServer, tmp_path: Path
) -> None:
    for patient in PATIENTS:
        shutil.copy(FIXTURES / f"{patient}.json", tmp_path)
    original, original_reasons = _cohort(tmp_path)
    deidentified, deidentified_reasons = _cohort(captured)
    pseudonym = Deidentifier(KEY, fhir_server.base_url).pseudonym
    assert len(original) >= 3 and original_reasons, "want included and excluded patients"
    # Reasons name their source resources: compare them under the pseudonyms.
    expected = {
        pseudonym("Patient", patient): REFERENCE.sub(
            lambda ref: f"{ref[1]}/{pseudonym(ref[1], ref[2])}", reason or ""
        )
        for patient, reason in original_reasons.items()
    }
    assert {p: reason or "" for p, reason in deidentified_reasons.items()} == expected
    renamed = original.rename(index=lambda patient: pseudonym("Patient", patient))
    renamed = renamed.loc[deidentified.index]
    pd.testing.assert_frame_equal(deidentified[SAME_COLUMNS], renamed[SAME_COLUMNS])
    ages = (deidentified["age_at_surgery"] - renamed["age_at_surgery"]).abs()
    assert (ages <= 1).all()
    for column in ("surgery_date", "downstaging_start", "last_contact_date"):
        assert (deidentified[column] != renamed[column]).all(), column
