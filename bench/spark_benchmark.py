"""The Spark engine against the local engine on the realistic export, per resource.

Usage (from the repository root):

    .venv/bin/python bench/spark_benchmark.py                  # 1 M resources (~5 min)
    .venv/bin/python bench/spark_benchmark.py --size 200k      # a smoke test
    .venv/bin/python bench/spark_benchmark.py --gzip           # the same export gzipped

Both engines run on the same export (`bench/make_export.py`, shape `hospital`), each in a fresh
process, and must include exactly the planted salvage patients. The local engine is
`fhir-hcc cohort` with its default workers, measured as a process tree (`os.wait4`). The Spark
engine is `fhir_hcc.spark.build_cohort` in local mode with 2 cores, run twice in one session:
the first run pays for the JVM's warm-up and the Python workers' start, the second is the
steady state a cluster's long run is made of. For each Spark run: wall seconds; CPU seconds of
the driver's Python, of the JVM (driver and executor threads, in local mode one process) and
of the Python workers (where the mappers and the derivation run), read from /proc; and from
Spark's status API: tasks, executor run time, shuffle bytes written, input bytes. Then the
figures per resource that docs/spark.md's projection rests on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

# The cohort benchmark and make_export are sibling scripts, not installed modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cohort_benchmark import (
    BenchmarkError,
    Export,
    code_under_test,
    ensure_export,
    load_average,
    run_cohort,
    warm_page_cache,
)
from make_export import DATA_DIR, DEFAULT_SHAPE, resource_count

TICKS = os.sysconf("SC_CLK_TCK")
CONF = {
    "spark.ui.enabled": "true",  # its REST API gives the stage metrics; loopback only
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.memory": "4g",
}


# -- in the child process: one Spark session, two runs ------------------------------------------


def tree_cpu() -> dict[str, float]:
    """CPU seconds of this process (the driver's Python), of the JVM and of the Python
    workers below it: user + system, with the children each has reaped."""
    stats: dict[int, tuple[int, str, float]] = {}
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = path.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        cpu = sum(int(value) for value in fields[11:15]) / TICKS  # utime stime cutime cstime
        stats[int(path.parent.name)] = (int(fields[1]), name, cpu)
    me = os.getpid()
    found = {"driver": stats[me][2], "jvm": 0.0, "python workers": 0.0}
    for pid, (_, name, cpu) in stats.items():
        if pid != me and _descends(pid, me, stats):
            found["jvm" if name == "java" else "python workers"] += cpu
    return found


def _descends(pid: int, root: int, stats: dict[int, tuple[int, str, float]]) -> bool:
    while pid in stats and pid > 1:
        pid = stats[pid][0]
        if pid == root:
            return True
    return False


def stage_metrics(spark: Any, after: int) -> dict[str, float]:
    """Spark's figures for the stages numbered above `after` (one run's), summed."""
    base = f"{spark.sparkContext.uiWebUrl}/api/v1/applications/{spark.sparkContext.applicationId}"
    with urllib.request.urlopen(f"{base}/stages") as answer:  # the driver's UI, on loopback
        stages = [s for s in json.load(answer) if s["stageId"] > after]
    keys = ("numTasks", "executorRunTime", "executorCpuTime", "shuffleWriteBytes", "inputBytes")
    found = {key: float(sum(stage[key] for stage in stages)) for key in keys}
    found["stages"] = len(stages)
    found["last_stage"] = max((stage["stageId"] for stage in stages), default=after)
    return found


def child(source: Path, out: Path) -> None:
    from fhir_hcc.spark import build_cohort, start_session

    started = time.perf_counter()
    spark = start_session("local[2]", CONF)
    spark.sparkContext.setLogLevel("ERROR")
    runs: list[dict[str, Any]] = []
    last_stage = -1
    session_seconds = time.perf_counter() - started
    for _ in range(2):
        spark.catalog.clearCache()
        cpu_before = tree_cpu()
        started = time.perf_counter()
        result = build_cohort(spark, source)
        wall = time.perf_counter() - started
        cpu_after = tree_cpu()
        metrics = stage_metrics(spark, last_stage)
        last_stage = int(metrics["last_stage"])
        runs.append(
            {
                "wall": wall,
                "cpu": {key: cpu_after[key] - cpu_before[key] for key in cpu_before},
                "metrics": metrics,
                "included": sorted(result.table["patient_id"]),
            }
        )
    spark.stop()
    out.write_text(json.dumps({"session": session_seconds, "runs": runs}))


# -- the benchmark ---------------------------------------------------------------------------------


def spark_runs(export: Export) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="spark-bench-") as scratch:
        out = Path(scratch) / "figures.json"
        command = [sys.executable, __file__, "--child", str(export.directory), str(out)]
        done = subprocess.run(command, cwd=scratch, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            raise BenchmarkError(f"the Spark run exited {done.returncode}: {last}")
        figures = json.loads(out.read_text())
    for number, run in enumerate(figures["runs"], start=1):
        if frozenset(run["included"]) != export.planted:
            raise BenchmarkError(
                f"Spark run {number}: {len(run['included'])} patients included, "
                f"{len(export.planted)} planted"
            )
    return figures


def report(export: Export, local: Any, figures: dict[str, Any]) -> str:
    n = export.resources
    megabytes = sum(path.stat().st_size for path in export.files) / 2**20
    lines = [
        f"export: {export.directory} ({n:,} resources, {megabytes:,.0f} MB, "
        f"{len(export.files)} files)",
        f"Spark session start: {figures['session']:.1f} s (not in the runs' wall time)",
        "",
        "| run | wall s | resources/s | CPU s: driver / JVM / Python workers = all | "
        "CPU µs per resource (all; executors) | tasks | shuffle bytes written (per resource) |",
        "|---|---|---|---|---|---|---|",
        f"| local engine, 2 worker processes | {local.wall:.1f} | {n / local.wall:,.0f} | "
        f"{local.cpu:.1f} (the process tree) | {local.cpu / n * 1e6:.1f} | - | - (no shuffle) |",
    ]
    for label, run in zip(("Spark, first run", "Spark, second run"), figures["runs"], strict=True):
        cpu = run["cpu"]
        every = sum(cpu.values())
        executors = cpu["jvm"] + cpu["python workers"]
        metrics = run["metrics"]
        shuffle = metrics["shuffleWriteBytes"]
        lines.append(
            f"| {label} | {run['wall']:.1f} | {n / run['wall']:,.0f} | "
            f"{cpu['driver']:.1f} / {cpu['jvm']:.1f} / {cpu['python workers']:.1f} = "
            f"{every:.1f} | {every / n * 1e6:.1f}; {executors / n * 1e6:.1f} | "
            f"{metrics['numTasks']:.0f} | {shuffle / 2**20:,.1f} MB ({shuffle / n:.0f} B) |"
        )
    second = figures["runs"][1]["metrics"]
    lines += [
        "",
        f"Spark's own figures, second run: {second['stages']:.0f} stages, executor run time "
        f"{second['executorRunTime'] / 1000:.1f} s, executor CPU (JVM threads only) "
        f"{second['executorCpuTime'] / 1e9:.1f} s, input {second['inputBytes'] / 2**20:,.0f} MB; "
        f"shuffle / input bytes: {second['shuffleWriteBytes'] / (megabytes * 2**20):.3f}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=resource_count, default=1_000_000, help="resources (1m)")
    parser.add_argument("--gzip", action="store_true", help="the export gzipped")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where exports are kept")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    options = argparse.Namespace(
        data_dir=args.data_dir, shape=DEFAULT_SHAPE, seed=2004, patients=None
    )
    try:
        export = ensure_export(args.size, args.gzip, options)
        before = load_average()
        warm_page_cache(export.files)
        print("local engine ...", file=sys.stderr, flush=True)
        local = run_cohort(export.directory, [])
        if local.included != export.planted:
            raise BenchmarkError("the local engine did not include exactly the planted patients")
        print("Spark engine, two runs in one session ...", file=sys.stderr, flush=True)
        figures = spark_runs(export)
        print(report(export, local, figures))
        print(
            f"\nload average (1, 5, 15 min) before: {before}; after: {load_average()}; "
            f"{os.cpu_count()} CPUs"
        )
        print(code_under_test())
    except BenchmarkError as error:
        print(f"spark_benchmark: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
