"""One judgement of a CapabilityStatement: `doctor`, the pull and `sync --mode auto` agree."""

from __future__ import annotations

import asyncio

import pytest

from fhir_hcc.fhir.capability import (
    export_levels,
    identity,
    search_parameters,
    searchable,
    statement,
    supports_export,
)
from fhir_hcc.registry import SyncSettings, sync
from fhir_hcc.server.doctor import diagnose, render
from server.conftest import fast_options
from server.fake_fhir import BASE, FakeFhirServer
from server.test_pull import SEARCH_CODES, registry


def capability(rest: dict) -> dict:
    return {"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1", "rest": [rest]}


@pytest.mark.parametrize(
    ("rest", "levels"),
    [
        ({"operation": [{"name": "export"}]}, ("system",)),
        (
            {
                "operation": [
                    {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"},
                    {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"},
                ]
            },
            ("Patient", "Group"),
        ),  # Bulk Data 1.x: every level declared at the server, named by its definition
        ({"resource": [{"type": "Group", "operation": [{"name": "export"}]}]}, ("Group",)),
        ({"resource": [{"type": "Observation", "operation": [{"name": "export"}]}]}, ()),
        ({"operation": [{"name": "everything"}]}, ()),
        ({"mode": "client", "operation": [{"name": "export"}]}, ()),
    ],
)  # fmt: skip
def test_export_levels(rest: dict, levels: tuple[str, ...]) -> None:
    assert export_levels(capability(rest)) == levels
    assert supports_export(capability(rest)) == ("system" in levels)


def test_search_parameters_and_searchable_types() -> None:
    listed = capability(
        {
            "resource": [
                {"type": "Condition", "interaction": [{"code": "search-type"}],
                 "searchParam": [{"name": "patient"}]},
                {"type": "Medication", "interaction": [{"code": "read"}]},
                {"type": "Encounter"},
            ]
        }
    )  # fmt: skip
    assert search_parameters(listed, "Condition") == {"patient", "_id"}
    assert search_parameters(listed, "Observation") == {"_id"}
    assert searchable(listed, "Condition") and searchable(listed, "Encounter")
    assert not searchable(listed, "Medication")  # read only
    assert not searchable(listed, "Observation")  # not listed
    assert searchable({}, "Observation")  # nothing listed: nothing to judge by


def test_statement_and_identity() -> None:
    assert statement({"resourceType": "OperationOutcome"}) == {}
    assert statement(None) == {}
    cerner = {
        "resourceType": "CapabilityStatement",
        "publisher": "Oracle Health",
        "implementation": {"description": "Millennium", "url": "https://fhir-ehr.cerner.com/r4/t"},
    }
    assert identity(statement(cerner)) == {
        "software": "",
        "publisher": "Oracle Health",
        "implementation": "Millennium https://fhir-ehr.cerner.com/r4/t",
    }


def test_doctor_and_sync_judge_export_alike(httpx_mock, tmp_path) -> None:
    """A server offering only Group-level `$export`: no system-level export for `sync`."""
    fake = FakeFhirServer(registry())
    group = {"type": "Group", "operation": [{"name": "export"}]}
    fake.capability |= {"rest": [{"mode": "server", "resource": [group]}]}
    httpx_mock.add_callback(fake, is_reusable=True)
    text = render(asyncio.run(diagnose(BASE, SEARCH_CODES, fast_options(), environ={})))
    assert "bulk $export  yes (Group level)" in text
    record = sync(SyncSettings(BASE, tmp_path / "registry.sqlite"), fast_options(), environ={})
    assert (record["status"], record["mode"]) == ("ok", "search")
    assert [r.url.path for r in fake.seen].count("/r4/metadata") == 2  # doctor's and the sync's
