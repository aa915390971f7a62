"""Large NDJSON inputs are read by several processes; the result must equal one process's."""

from pathlib import Path

import orjson
import pandas as pd
import pytest

import fhir_hcc
from fhir_hcc.cohort import collect, derive_cohort
from fhir_hcc.cohort.build import collect_parallel
from fhir_hcc.config import CohortConfig
from fhir_hcc.sources import FileSource, InTurn, NdjsonSlice, partitions, shares_of

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "salvage2004"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference bundles as a Bulk-Data-style export (one NDJSON file per type), with a
    truncated line and a blank line in the middle of the Observations."""
    folder = tmp_path_factory.mktemp("export")
    by_type: dict[str, list[bytes]] = {}
    for item, _ in FileSource(FIXTURES).read(lambda problem: None):  # urn:uuid resolved
        by_type.setdefault(orjson.loads(item)["resourceType"], []).append(item)
    observations = by_type["Observation"]
    middle = len(observations) // 2
    observations[middle:middle] = [b'{"resourceType": "Observation", "id": "cut', b""]
    for resource_type, lines in by_type.items():
        (folder / f"{resource_type}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    return folder


def test_slices_cover_every_line_once(export: Path) -> None:
    parts = partitions(FileSource(export), chunk_bytes=50_000)
    slices = [part for part in parts if isinstance(part, NdjsonSlice)]
    assert len(slices) > 10
    observations = export / "Observation.ndjson"
    lines = []
    for part in slices:
        if part.path == observations:
            lines += [item for item, _ in part.read(lambda problem: None)]
    expected = [
        line for line in observations.read_bytes().splitlines(keepends=True) if line.strip()
    ]
    assert lines == expected


def _shares(export: Path, chunk_bytes: int, share_bytes: int) -> list[InTurn]:
    return shares_of(partitions(FileSource(export), chunk_bytes), share_bytes)


# Shares of one slice each; of several slices of one file (numbered on within the share, and
# from the earlier shares' lines); of several whole files.
@pytest.mark.parametrize("chunk_bytes,share_bytes", [(50_000, 1), (50_000, 120_000), (10**9, 1)])
def test_parallel_equals_sequential(export: Path, chunk_bytes: int, share_bytes: int) -> None:
    mappings, config = fhir_hcc.load_mappings(), CohortConfig()
    sequential = derive_cohort(collect(FileSource(export), mappings, config), config)
    shares = _shares(export, chunk_bytes, share_bytes)
    assert len(shares) > 1
    parallel = derive_cohort(collect_parallel(shares, mappings, config, workers=2), config)
    pd.testing.assert_frame_equal(sequential.table, parallel.table)
    assert sequential.flow == parallel.flow
    assert len(sequential.table) == 49
    key = ["patient_id", "rule", "source", "detail"]
    pd.testing.assert_frame_equal(
        sequential.qc.sort_values(key).reset_index(drop=True),
        parallel.qc.sort_values(key).reset_index(drop=True),
    )
    assert [str(p) for p in sequential.problems] == [str(p) for p in parallel.problems]
    lines = (export / "Observation.ndjson").read_bytes().split(b"\n")
    cut_line = next(number for number, line in enumerate(lines, start=1) if b'"cut' in line)
    assert [(p.origin.line, p.message.split(" (")[0]) for p in parallel.problems] == [
        (cut_line, "malformed JSON")
    ]


def test_ndjson_equals_bundles(export: Path) -> None:
    """The same resources as NDJSON lines or as Bundle entries give the same cohort."""
    from_bundles = fhir_hcc.build_cohort(FIXTURES)
    from_ndjson = fhir_hcc.build_cohort(export, workers=1)
    pd.testing.assert_frame_equal(from_bundles.table, from_ndjson.table)
    notes = from_ndjson.qc[from_ndjson.qc.rule != "input_problem"].reset_index(drop=True)
    pd.testing.assert_frame_equal(from_bundles.qc, notes)


def test_workers_are_spawned_where_fork_is_missing(
    export: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows and macOS start workers by spawn: the mappings and parts travel by pickle."""
    mappings, config = fhir_hcc.load_mappings(), CohortConfig()
    sequential = derive_cohort(collect(FileSource(export), mappings, config), config)
    monkeypatch.setattr("multiprocessing.get_all_start_methods", lambda: ["spawn"])
    shares = _shares(export, 500_000, 500_000)
    spawned = derive_cohort(collect_parallel(shares, mappings, config, workers=2), config)
    pd.testing.assert_frame_equal(sequential.table, spawned.table)
    assert sequential.flow == spawned.flow


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_reports_every_byte_once(export: Path, workers: int) -> None:
    """Progress rises to the size of the whole input, by files (one process) or shares."""
    seen: list[tuple[int, int]] = []
    total = sum(path.stat().st_size for path in FileSource(export).files())
    shares = _shares(export, 50_000, 120_000)
    config = CohortConfig()
    if workers == 1:
        fhir_hcc.build_cohort(export, workers=1, progress=lambda *done: seen.append(done))
    else:
        collect_parallel(shares, fhir_hcc.load_mappings(), config, 2, lambda *d: seen.append(d))
    dones = [done for done, _ in seen]
    assert dones == sorted(dones) and dones[-1] == total
    assert {all_bytes for _, all_bytes in seen} == {total}
    assert len(seen) == (len(FileSource(export).parts()) if workers == 1 else len(shares))
