"""Which mode a sync runs in, and how a crashed run's fetched files are written later."""

from __future__ import annotations

import pytest

from fhir_hcc.registry.sync import choose_mode, mode_of


@pytest.mark.parametrize(
    ("requested", "bulk", "has_previous", "expected"),
    [
        ("auto", True, True, "full"),
        ("auto", False, True, "search"),
        ("incremental", True, True, "incremental"),
        ("incremental", False, True, "search-incremental"),
        ("incremental", True, False, "full"),
        ("incremental", False, False, "search"),
        ("search-incremental", None, True, "search-incremental"),
        ("search-incremental", None, False, "search"),
        ("full", None, False, "full"),
        ("search", None, True, "search"),
    ],
)
def test_mode_follows_the_server_and_the_last_good_run(requested, bulk, has_previous, expected):
    assert choose_mode(requested, bulk, has_previous) == expected


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ({"mode": "bulk", "request": {"since": None}}, "full"),
        ({"mode": "bulk", "request": {"since": "2026-01-01T00:00:00Z"}}, "incremental"),
        ({"mode": "search", "since": None}, "search"),
        ({"mode": "search", "since": "2026-01-01T00:00:00Z"}, "search-incremental"),
        ({"since": None}, None),  # written by an older version: fetched anew
        ({}, None),
    ],
)
def test_a_fetched_manifest_keeps_its_mode(manifest, expected):
    assert mode_of(manifest) == expected
