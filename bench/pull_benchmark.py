"""Pull benchmark: the search plans against SEKMET, directly and through the EHR emulator.

A synthetic registry (default 5,000 patients, about 200,000 resources, 300 in the cohort) is
loaded once into SEKMET with an on-disk SQLite database under `bench/data/` and reused by later
runs. A case list of 1,000 patients (the 300 of the cohort and 700 others, drawn with a fixed
seed) is pulled four ways, all with the same client (concurrency, retries, paging):

- baseline, measured in the same run: the generic plan finding its patients by code, in
  batches of patients (`patient=a,b,c`);
- the generic plan with the case list, in batches;
- the case list through the EHR emulator with Epic's rules (one patient per search, `_count` 50,
  Medications read one by one) and with Oracle Health's (one patient per search, `_count` 200,
  Medications contained).

Prints requests, resources, wall time and requests per patient of each, requests per resource
type, and what the emulator refused (nothing, when the profile is right) and whether any
request asked for a type the mappers do not read.

    .venv/bin/python bench/pull_benchmark.py [--patients 5000 --cohort 300 --listed 1000] [--reload]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fhir_server import SekmetServer, post_transaction  # noqa: E402
from integration.ehr_emulator import EhrEmulator  # noqa: E402
from integration.registry import synthetic_registry, transaction_bundles  # noqa: E402

from fhir_hcc.fhir.types import COHORT_TYPES  # noqa: E402
from fhir_hcc.mappings import load_mappings  # noqa: E402
from fhir_hcc.server import ClientOptions, pull  # noqa: E402
from fhir_hcc.server.caselist import Population, read_patients  # noqa: E402

DATA = ROOT / "bench" / "data" / "pull-benchmark"  # bench/data is shared and git-ignored


def load(server: SekmetServer, patients: int, cohort: int, marker: Path) -> dict[str, Any]:
    """Load the registry with two clients (the measured SEKMET sweet spot) unless already loaded."""
    wanted = {"patients": patients, "cohort": cohort}
    if marker.exists() and json.loads(marker.read_text()).get("registry") == wanted:
        return json.loads(marker.read_text())
    started = time.perf_counter()
    resources = synthetic_registry(patients, cohort)
    bundles = list(transaction_bundles(resources, size=500))
    with httpx.Client() as http, ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda bundle: post_transaction(server.base_url, bundle, http), bundles))
    seconds = time.perf_counter() - started
    facts = {"registry": wanted, "resources": len(resources), "load_seconds": round(seconds, 1)}
    marker.write_text(json.dumps(facts))
    return facts


def case_list(patients: int, cohort: int, listed: int, folder: Path) -> Population:
    """The cohort's patients and others up to `listed`, one id a line."""
    in_cohort = {
        resource["subject"]["reference"].split("/")[1]
        for resource in synthetic_registry(patients, cohort)
        if resource["resourceType"] == "Procedure" and resource.get("code", {}).get("coding")
        and resource["code"]["coding"][0]["code"] == "47122"
    }  # fmt: skip
    others = sorted(f"R{n:05d}" for n in range(patients) if f"R{n:05d}" not in in_cohort)
    chosen = sorted(in_cohort) + random.Random(11).sample(others, listed - len(in_cohort))
    path = folder / "case-list.txt"
    path.write_text("\n".join(chosen) + "\n")
    return read_patients(path)


def measure(
    base_url: str,
    search_codes: dict,
    options: ClientOptions,
    population: Population | None,
    emulator: EhrEmulator | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        if emulator is not None:
            with emulator:
                base = emulator.base_url(base_url)
                manifest = asyncio.run(
                    pull(base, search_codes, options, Path(out), population=population, environ={})
                )
        else:
            manifest = asyncio.run(
                pull(base_url, search_codes, options, Path(out), population=population, environ={})
            )
        seconds = time.perf_counter() - started
    by_type = Counter(
        query["query"].split()[1].split("?")[0].split("/")[0] for query in manifest["queries"]
    )
    counts = emulator.counts if emulator is not None else Counter()
    return {
        "requests": manifest["requests"]["requests"],
        "resources": sum(manifest["counts"].values()),
        "counts": manifest["counts"],
        "patients": manifest["candidates"],
        "profile": manifest["profile"]["name"],
        "seconds": seconds,
        "by_type": dict(sorted(by_type.items())),
        "refused": {key: n for key, n in counts.items() if key.startswith("refused")},
        "asked": {key.split()[1] for key in counts if key.startswith("requests ")} - {"metadata"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--cohort", type=int, default=300)
    parser.add_argument("--listed", type=int, default=1000, help="patients in the case list")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--reload", action="store_true", help="drop the database and load again")
    args = parser.parse_args()

    DATA.mkdir(parents=True, exist_ok=True)
    database, marker = DATA / "sekmet-bench.db", DATA / "loaded.json"
    if args.reload:
        database.unlink(missing_ok=True)
        marker.unlink(missing_ok=True)
    search_codes = load_mappings().search_codes()
    with (
        tempfile.TemporaryDirectory() as folder,
        SekmetServer(DATA / "server", db_path=str(database)) as server,
    ):
        facts = load(server, args.patients, args.cohort, marker)
        print(
            f"registry: {facts['resources']} resources, {args.patients} patients, "
            f"{args.cohort} in the cohort; loaded in {facts['load_seconds']} s "
            f"({facts['resources'] / facts['load_seconds']:.0f} res/s, measured once); "
            f"case list of {args.listed}"
        )
        population = case_list(args.patients, args.cohort, args.listed, Path(folder))
        options = ClientOptions(concurrency=args.concurrency, page_size=500)
        origin = server.base_url.removesuffix("/fhir")

        def run(listed: Population | None, vendor: str | None = None) -> dict[str, Any]:
            emulator = EhrEmulator(origin, Path(folder), vendor=vendor) if vendor else None
            return measure(server.base_url, search_codes, options, listed, emulator)

        runs = {
            "generic, by code, batched (baseline)": run(None),
            "generic, case list, batched": run(population),
            "Epic emulator, case list": run(population, "epic"),
            "Oracle emulator, case list": run(population, "oracle"),
        }
    baseline = runs["generic, by code, batched (baseline)"]
    for name, figures in runs.items():
        print(
            f"{name:<38} {figures['requests']:>6} requests  {figures['resources']:>7} resources  "
            f"{figures['seconds']:>7.1f} s  {figures['patients']:>5} patients  "
            f"{figures['requests'] / max(figures['patients'], 1):>5.1f} requests/patient  "
            f"x{figures['seconds'] / baseline['seconds']:.1f} wall time of the baseline  "
            f"(profile {figures['profile']})"
        )
    for name, figures in runs.items():
        print(f"  {name}: requests per type {figures['by_type']}")
        if figures["asked"]:
            wasted = sorted(figures["asked"] - set(COHORT_TYPES))
            print(f"    emulator refused: {figures['refused'] or 'nothing'}; "
                  f"types the mappers do not read asked for: {wasted or 'none'}")  # fmt: skip
    listed = [figures for name, figures in runs.items() if "case list" in name]
    kept = [{t: n for t, n in f["counts"].items() if t != "Medication"} for f in listed]
    if any(counts != kept[0] for counts in kept):
        sys.exit(f"the case-list pulls differ: {kept}")


if __name__ == "__main__":
    main()
