"""Benchmark the registry's write step: a full bulk sync of a synthetic export, then incrementals.

Usage (from the repository root):

    .venv/bin/python bench/sync_benchmark.py                 # 1,000,000 resources, 1 % changed
    .venv/bin/python bench/sync_benchmark.py --resources 100k --snapshot

The export `bench/data/export-N` is made by `bench/make_export.py` when missing. From it, two
more exports are written under `bench/data/sync-N/`: a `_since` delta holding 1 % of the
resources, changed (new versionId and lastUpdated), and a full export in which the same 1 % are
changed once more. Each phase runs in a fresh subprocess (peak RSS of that process alone,
`os.wait4`) and writes exactly as `fhir-hcc sync` does after its download: one run, one
transaction, the content-hash ledger, commit. Phases:

- full: the first sync, into an empty registry;
- incremental: the `_since` delta (what an incremental sync of a server that supports it writes);
- ledger: the full export with 1 % changed (a full sync that finds changes by comparison);
- snapshot (with --snapshot): the cohort built from the registry, as each sync run stores it.

No server is involved: the HTTP side is timed by the pull and bulk tests, and would only measure
the test server here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from make_export import (  # noqa: E402
    DATA_DIR,
    default_directory,
    make_export,
    ndjson_files,
    read_manifest,
    resource_count,
)

from fhir_hcc.registry import Registry, RegistrySource  # noqa: E402
from fhir_hcc.registry.ingest import ingest  # noqa: E402

CHANGED_EVERY = 100  # 1 %


# -- inputs ------------------------------------------------------------------------------------
def ensure_export(resources: int) -> Path:
    export = default_directory(resources, False)
    if (read_manifest(export) or {}).get("resources") != resources:
        print(f"making the {resources:,}-resource export in {export} ...", flush=True)
        make_export(resources, export)
    return export


def changed_line(line: bytes, version: str) -> bytes:
    resource = orjson.loads(line)
    meta = resource.setdefault("meta", {})
    meta["versionId"] = f"{meta.get('versionId', '1')}-{version}"
    meta["lastUpdated"] = "2026-06-01T00:00:00.000Z"
    return orjson.dumps(resource) + b"\n"


def make_changed_exports(export: Path, work: Path) -> tuple[Path, Path]:
    """The 1 % delta and the full export with the same 1 % changed (made once, then reused)."""
    delta, full = work / "delta", work / "full-changed"
    if (work / "done").exists():
        return delta, full
    shutil.rmtree(work, ignore_errors=True)
    delta.mkdir(parents=True)
    full.mkdir()
    for path in ndjson_files(export):
        with (
            path.open("rb") as source,
            (delta / path.name).open("wb") as delta_out,
            (full / path.name).open("wb") as full_out,
        ):
            for number, line in enumerate(source):
                if number % CHANGED_EVERY == CHANGED_EVERY - 1:
                    delta_out.write(changed_line(line, "delta"))
                    line = changed_line(line, "full")
                full_out.write(line)
    (work / "done").touch()
    return delta, full


# -- one phase, in its own process -------------------------------------------------------------
def files_of(export: Path) -> dict[str, list[Path]]:
    grouped: dict[str, list[Path]] = {}
    for path in ndjson_files(export):
        grouped.setdefault(path.name.split(".")[0], []).append(path)
    return grouped


def run_phase(phase: str, registry_path: Path, export: Path | None) -> dict[str, Any]:
    started = time.perf_counter()
    with Registry(registry_path) as registry:
        run_id = registry.start_run(
            {
                "started": "bench",
                "mode": phase,
                "server": "bench",
                "tool_version": "bench",
                "mappings_version": "bench",
            }
        )
        if phase == "snapshot":
            from fhir_hcc.cohort import build_cohort

            rows = len(build_cohort(RegistrySource(registry)).table)
            return {"seconds": time.perf_counter() - started, "cohort": rows}
        assert export is not None
        registry.begin(run_id)
        result = ingest(registry, run_id, files_of(export), complete=phase != "incremental")
        registry.finish_run(run_id, {"status": "ok", "counts": result.record()})
        written = time.perf_counter()
        registry.commit()
        committed = time.perf_counter()
    seconds = time.perf_counter() - started
    received = sum(counts.received for counts in result.counts.values())
    return {
        "seconds": seconds,
        "received": received,
        "writes": result.writes,
        "split": f"ingest {written - started:.1f} s, commit {committed - written:.1f} s",
    }


def measure(phase: str, registry: Path, export: Path | None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", phase, "--registry", str(registry)]
    if export is not None:
        command += ["--export", str(export)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"phase {phase} failed")
    result = orjson.loads(output)
    result |= {"wall": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "cpu": usage.ru_utime}
    result["bytes"] = sum(
        p.stat().st_size for p in registry.parent.glob(f"{registry.name}*") if p.is_file()
    )
    return result


def report(phase: str, result: dict[str, Any]) -> None:
    rate = result.get("received", 0) / result["seconds"] if result.get("received") else None
    rate_text = f"{rate:>10,.0f} res/s" if rate else " " * 16
    detail = (
        f"{result['received']:>9,} received, {result['writes']:>9,} written ({result['split']})"
        if "received" in result
        else f"cohort of {result['cohort']} patients"
    )
    print(
        f"{phase:<12} {result['seconds']:7.1f} s (process {result['wall']:5.1f} s)  {rate_text}  "
        f"peak RSS {result['peak_rss_mb']:6.0f} MB  registry {result['bytes'] / 1e6:7.0f} MB  "
        f"{detail}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=resource_count, default=1_000_000)
    parser.add_argument("--snapshot", action="store_true", help="also time the cohort snapshot")
    parser.add_argument("--phase", choices=("full", "incremental", "ledger", "snapshot"))
    parser.add_argument("--registry", type=Path)
    parser.add_argument("--export", type=Path)
    args = parser.parse_args(argv)
    if args.phase:  # the child process
        sys.stdout.write(orjson.dumps(run_phase(args.phase, args.registry, args.export)).decode())
        return 0
    export = ensure_export(args.resources)
    work = DATA_DIR / f"sync-{args.resources}"
    delta, full_changed = make_changed_exports(export, work)
    for path in ndjson_files(export):  # warm the page cache, as a fresh download would be
        with path.open("rb") as handle:
            while handle.read(1 << 24):
                pass
    registry = work / "registry.sqlite"
    for stale in work.glob("registry.sqlite*"):
        stale.unlink()
    full = measure("full", registry, export)
    report("full", full)
    incremental = measure("incremental", registry, delta)
    report("incremental", incremental)
    ledger = measure("ledger", registry, full_changed)
    report("ledger", ledger)
    if args.snapshot:
        report("snapshot", measure("snapshot", registry, None))
    share = incremental["seconds"] / full["seconds"]
    print(
        f"targets: full {full['received'] / full['seconds']:,.0f} res/s (>= 50,000), "
        f"incremental {share:.1%} of full (< 10%), peak RSS "
        f"{max(full['peak_rss_mb'], incremental['peak_rss_mb'], ledger['peak_rss_mb']):.0f} MB "
        f"(< 1024)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
