"""A server matches token searches on the stored text: codes are searched in every spelling."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest
from fhir_server import SekmetServer, post_transaction

from fhir_hcc.mappings import load_mappings
from fhir_hcc.server import ClientOptions, pull

pytestmark = pytest.mark.integration

# Each patient's only candidate resource is a Condition in a spelling other than the mapping's
# (hcc.toml lists C22.0 under ICD-10 and ICD-10-CM, and 155.0 under ICD-9-CM).
SPELLINGS = {
    "W01": ("http://hl7.org/fhir/sid/icd-10-cm", "C220"),  # mCODE STU1 drops the dot
    "W02": ("http://hl7.org/fhir/sid/icd-10", "C220"),
    "W03": ("http://hl7.org/fhir/sid/icd-9-cm/diagnosis", "155.0"),  # an alias URI
}


def bundle() -> dict:
    entries = []
    for patient, (system, code) in SPELLINGS.items():
        condition = {
            "resourceType": "Condition",
            "id": f"{patient}-cancer",
            "subject": {"reference": f"Patient/{patient}"},
            "code": {"coding": [{"system": system, "code": code}]},
        }
        entries += [
            {"resourceType": "Patient", "id": patient},
            condition,
        ]
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
            for resource in entries
        ],
    }


def test_pull_finds_candidates_coded_in_other_spellings(tmp_path: Path):
    with SekmetServer(tmp_path / "sekmet") as server, httpx.Client() as http:
        post_transaction(server.base_url, bundle(), http)
        options = ClientOptions(page_size=100, batch_size=20)
        manifest = asyncio.run(
            pull(server.base_url, load_mappings().search_codes(), options, tmp_path / "out")
        )
    assert manifest["candidates"] == len(SPELLINGS)
    conditions = (tmp_path / "out" / "Condition.ndjson").read_bytes().splitlines()
    assert {orjson.loads(line)["id"] for line in conditions} == {
        f"{patient}-cancer" for patient in SPELLINGS
    }
