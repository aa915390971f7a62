"""A SEKMET server for the whole test session, loaded with the salvage2004 fixture bundles.

The server is installed when missing, started on a free loopback port with an in-memory store,
and stopped by PID at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir_server import ROOT, SekmetServer, load_bundles

from fhir_hcc.sources import FileSource

FIXTURES = ROOT / "fixtures" / "salvage2004"


@dataclass
class LoadedServer:
    base_url: str
    origin: str
    data_dir: Path
    resources: dict[tuple[str, str], dict[str, Any]]  # as the file reader sees the bundles


def _read_files(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    problems: list[Any] = []
    resources = {}
    for item, _origin in FileSource(folder).read(problems.append):
        resource = orjson.loads(item)
        resources[resource["resourceType"], resource["id"]] = resource
    assert problems == [], problems[:3]
    return resources


@pytest.fixture(scope="session")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedServer]:
    with SekmetServer(tmp_path_factory.mktemp("sekmet")) as server:
        load_bundles(server.base_url, FIXTURES)
        yield LoadedServer(
            server.base_url,
            f"http://127.0.0.1:{server.port}",
            FIXTURES,
            _read_files(FIXTURES),
        )
