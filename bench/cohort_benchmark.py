"""Benchmark the cohort step (`fhir-hcc cohort`) on a realistic export, against issue 12's targets.

Usage (from the repository root; no Makefile needed):

    .venv/bin/python bench/cohort_benchmark.py                  # the realistic benchmark, ~5 min
    .venv/bin/python bench/cohort_benchmark.py --repeat 3       # medians of 3 runs each
    .venv/bin/python bench/cohort_benchmark.py --quick          # 100k and 200k: a smoke test
    .venv/bin/python bench/cohort_benchmark.py --shape legacy   # the first benchmark's export
    .venv/bin/python bench/cohort_benchmark.py --data-dir /dev/shm/fhir-hcc-bench
    .venv/bin/python bench/cohort_benchmark.py --profile bench/data/cohort-1m.prof
    PYTHONPATH=/tmp/other-checkout .venv/bin/python bench/cohort_benchmark.py   # another version

One run measures, side by side on the same files (the export of `bench/make_export.py`, shape
`hospital` by default; made under `bench/data/` when missing or stale):

- the baseline: one process reading every line of the export and `orjson.loads`-ing it;
- `fhir-hcc cohort` with the default workers (2 on this machine) and with `--workers 1`, on the
  smaller size (1 M resources);
- the same export gzipped (`*.ndjson.gz`, several files per type as servers deliver them);
- the larger size (2 M) for peak memory, and the growth from 1 M to 2 M;
- start-up: `fhir-hcc --help`, and `fhir-hcc cohort` on an empty folder;
- in every run, the cohort found against the salvage patients planted (the same patient ids).

Each cohort run is a fresh process (interpreter start and imports included) measured as one
process tree: wall and CPU seconds (`os.wait4`), peak RSS of the largest process, peak PSS of
all its processes (sampled from /proc every 0.25 s). The files are read once, untimed, first:
every figure is warm-cache. The table is followed by the ratios against issue 12's targets,
the load average, and the fhir_hcc code measured (path, commit, uncommitted changes).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import gzip
import importlib.util
import os
import pstats
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

# make_export is a sibling script, not an installed module.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_export import (
    DATA_DIR,
    DEFAULT_SHAPE,
    default_directory,
    load_shape,
    mix_table,
    ndjson_files,
    read_manifest,
    resource_count,
)

MAKE_EXPORT = Path(__file__).resolve().parent / "make_export.py"
SIZES = "1m,2m"
QUICK_SIZES = "100k,200k"
# The cohort command as `fhir-hcc` runs it; the profiled variant takes the .prof path first.
CLI = "import sys\nfrom fhir_hcc.cli import main\nsys.exit(main(sys.argv[1:]))\n"
PROFILED_CLI = (
    "import cProfile, sys\n"
    "from fhir_hcc.cli import main\n"
    "out = sys.argv.pop(1)\n"
    "profiler = cProfile.Profile()\n"
    "code = profiler.runcall(main, sys.argv[1:])\n"
    "profiler.dump_stats(out)\n"
    "sys.exit(code)\n"
)
# Issue 12's targets.
TWO_WORKERS_VS_ORJSON = 1.0
ONE_WORKER_VS_ORJSON = 0.6
GZIP_VS_PLAIN = 0.7
PEAK_MB = 1024
HELP_SECONDS = 0.3
EMPTY_COHORT_SECONDS = 0.8


class BenchmarkError(Exception):
    """A failed run or a cohort other than the one planted; the message is one line."""


@dataclass(frozen=True, slots=True)
class Run:
    """One command: wall and CPU seconds, peak memory in MB, and the patients it included."""

    wall: float
    cpu: float
    peak_mb: float  # RSS of the largest process (the command or one of its workers)
    tree_mb: float  # PSS of all its processes together, sampled
    included: frozenset[str]


@dataclass(frozen=True, slots=True)
class Export:
    directory: Path
    manifest: dict[str, Any]

    @property
    def resources(self) -> int:
        return self.manifest["resources"]

    @property
    def planted(self) -> frozenset[str]:
        return frozenset(self.manifest["salvage_ids"])

    @property
    def files(self) -> list[Path]:
        return list(ndjson_files(self.directory))


@dataclass(frozen=True, slots=True)
class Measured:
    """The runs of one cohort command on one export."""

    label: str
    export: Export
    runs: list[Run]

    @property
    def wall(self) -> float:
        return statistics.median(run.wall for run in self.runs)

    @property
    def best(self) -> float:
        return min(run.wall for run in self.runs)

    @property
    def rate(self) -> float:
        return self.export.resources / self.wall

    @property
    def cpu(self) -> float:
        return statistics.median(run.cpu for run in self.runs)

    @property
    def peak_mb(self) -> float:
        return max(run.peak_mb for run in self.runs)

    @property
    def tree_mb(self) -> float:
        return max(run.tree_mb for run in self.runs)


# ---------------------------------------------------------------------------------------------
# Running a command
# ---------------------------------------------------------------------------------------------


def run_cli(args: list[str], work: Path, profile: Path | None = None) -> Run:
    """`fhir-hcc ARGS` in a fresh interpreter started in `work`, measured as one process tree."""
    code = [PROFILED_CLI, str(profile.resolve())] if profile else [CLI]
    with (work / "stderr.txt").open("w+b") as stderr:
        start = time.perf_counter()
        # cwd: with `-c` the working directory comes first on sys.path; a scratch directory
        # leaves the choice of fhir_hcc to PYTHONPATH and the installed package.
        process = subprocess.Popen(
            [sys.executable, "-c", *code, *args],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group, so that a stop reaches workers
        )
        sampler = TreeMemory(process.pid)
        sampler.start()
        try:
            # wait4, not RUSAGE_CHILDREN (a maximum over every child so far): this child
            # and the workers it waited for, CPU summed, ru_maxrss of the largest.
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # interrupted: leave no run behind
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.killpg(process.pid, signal.SIGTERM)
                os.waitpid(process.pid, 0)
            raise
        finally:
            tree_mb = sampler.stop()
        wall = time.perf_counter() - start
        exit_code = os.waitstatus_to_exitcode(status)
        if exit_code != 0:
            stderr.seek(0)
            last = (stderr.read().decode(errors="replace").strip().splitlines() or ["?"])[-1]
            raise BenchmarkError(f"fhir-hcc {shlex.join(args[:2])}: exited {exit_code}: {last}")
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall, cpu, usage.ru_maxrss / 1024, tree_mb, frozenset())  # ru_maxrss is in KiB


def run_cohort(source: Path, extra: list[str], profile: Path | None = None) -> Run:
    """`fhir-hcc cohort SOURCE --out cohort.csv [extra]`, with the patients it included."""
    with tempfile.TemporaryDirectory(prefix="cohort-bench-") as scratch:
        work = Path(scratch)
        out = work / "cohort.csv"
        run = run_cli(["cohort", str(source), "--out", str(out), *extra], work, profile)
        with out.open(newline="") as handle:
            included = frozenset(row["patient_id"] for row in csv.DictReader(handle))
    return dataclasses.replace(run, included=included)


def run_help() -> Run:
    with tempfile.TemporaryDirectory(prefix="cohort-bench-") as scratch:
        return run_cli(["--help"], Path(scratch))


class TreeMemory(threading.Thread):
    """The peak summed PSS of a process and its descendants, sampled every `interval` seconds.

    PSS, not RSS: pages that forked workers share with their parent are counted once."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kb = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            tree = [self.pid, *descendants(self.pid)]
            self.peak_kb = max(self.peak_kb, sum(pss_kb(pid) for pid in tree))

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak_kb / 1024


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [root]
    while queue:
        kids = children.get(queue.pop(), [])
        found += kids
        queue += kids
    return found


def pss_kb(pid: int) -> int:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------------------------
# The baseline: every line through orjson.loads, in this process
# ---------------------------------------------------------------------------------------------


def open_ndjson(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def warm_page_cache(files: list[Path]) -> None:
    """Read the files once, untimed, so that every figure is warm-cache (CPU, not disk)."""
    for path in files:
        with path.open("rb") as handle:
            while handle.read(1 << 23):
                pass


def lines_per_second(files: list[Path], parse: Callable[[bytes], Any] | None) -> float:
    """Lines per second, reading every file and applying `parse` to each line if given."""
    lines = 0
    start = time.perf_counter()
    for path in files:
        with open_ndjson(path) as handle:
            for line in handle:
                if parse is not None:
                    parse(line)
                lines += 1
    return lines / (time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# Exports and measurements
# ---------------------------------------------------------------------------------------------


def ensure_export(resources: int, compress: bool, args: argparse.Namespace) -> Export:
    """The export of this size, made first if missing or made with other settings."""
    directory = default_directory(resources, compress, args.patients, args.data_dir, args.shape)
    manifest = read_manifest(directory)
    wanted = {
        "format_version": load_shape(args.shape)["format_version"],
        "shape": args.shape,
        "resources": resources,
        "seed": args.seed,
        "gzip": compress,
    }
    if args.patients:
        wanted["patients"] = args.patients
    if manifest is None or any(manifest.get(k) != v for k, v in wanted.items()):
        print(f"generating {directory} ...", file=sys.stderr, flush=True)
        # In a process of its own: this one stays small, and the cohort runs it forks with it.
        command = [sys.executable, str(MAKE_EXPORT), str(resources), "--out", str(directory)]
        command += ["--shape", args.shape, "--seed", str(args.seed)]
        command += ["--gzip"] * compress + ["--patients", str(args.patients)] * bool(args.patients)
        if subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
            raise BenchmarkError(f"{directory}: make_export failed")
        manifest = read_manifest(directory)
        assert manifest is not None
    return Export(directory, manifest)


def measure(label: str, export: Export, extra: list[str], repeat: int) -> Measured:
    runs = []
    for _ in range(repeat):
        print(f"{label}: cohort on {export.resources:,} resources ...", file=sys.stderr, flush=True)
        run = run_cohort(export.directory, extra)
        if run.included != export.planted:
            missing, extra_ids = export.planted - run.included, run.included - export.planted
            raise BenchmarkError(
                f"{label}: cohort found {len(run.included)} patients, planted "
                f"{len(export.planted)}: {len(missing)} missing (e.g. {sorted(missing)[:3]}), "
                f"{len(extra_ids)} not planted (e.g. {sorted(extra_ids)[:3]})"
            )
        runs.append(run)
    return Measured(label, export, runs)


def baseline(export: Export, repeat: int) -> float:
    """orjson.loads of every line in one process, resources per second (median)."""
    warm_page_cache(export.files)
    rates = [lines_per_second(export.files, orjson.loads) for _ in range(repeat)]
    return statistics.median(rates)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def thousands(rate: float) -> str:
    return f"{rate / 1000:,.0f} k"


def runs_table(rows: list[Measured], orjson_rate: dict[int, float]) -> str:
    header = (
        "| run | resources | MB | cohort found / planted | wall s | resources/s | vs orjson "
        "| CPU s | resources per CPU s | peak RSS MB, largest process "
        "| peak PSS MB, all processes |"
    )
    lines = [header, "|---|" + "---:|" * (header.count("|") - 2)]
    for row in rows:
        export = row.export
        size = sum(export.manifest["bytes"].values()) / 1e6
        baseline_rate = orjson_rate.get(export.resources)
        versus = f"{row.rate / baseline_rate:.2f}x" if baseline_rate else "-"
        lines.append(
            f"| {row.label} | {export.resources:,} | {size:,.0f} "
            f"| {len(row.runs[0].included)} / {len(export.planted)} "
            f"| {row.wall:.2f} ({row.best:.2f}) | {thousands(row.rate)} | {versus} "
            f"| {row.cpu:.2f} | {thousands(export.resources / row.cpu)} "
            f"| {row.peak_mb:,.0f} | {row.tree_mb:,.0f} |"
        )
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets(
    two: Measured,
    one: Measured,
    gz: Measured | None,
    small: Measured,
    large: Measured,
    orjson_rate: float,
    help_run: Run,
    empty_run: Run,
) -> str:
    lines = ["Against issue 12's targets (ratios of figures measured in this run):"]
    ratio = two.rate / orjson_rate
    lines.append(
        f"- default cohort ({two.label}) {thousands(two.rate)}/s vs one-process orjson.loads "
        f"{thousands(orjson_rate)}/s: {ratio:.2f}x (target >= {TWO_WORKERS_VS_ORJSON}x): "
        f"{verdict(ratio >= TWO_WORKERS_VS_ORJSON)}"
    )
    ratio = one.rate / orjson_rate
    lines.append(
        f"- one worker {thousands(one.rate)}/s: {ratio:.2f}x orjson (target >= "
        f"{ONE_WORKER_VS_ORJSON}x): {verdict(ratio >= ONE_WORKER_VS_ORJSON)}"
    )
    if gz is not None:
        ratio = gz.rate / two.rate
        lines.append(
            f"- gzipped {thousands(gz.rate)}/s: {ratio:.2f}x the uncompressed rate (target >= "
            f"{GZIP_VS_PLAIN}x): {verdict(ratio >= GZIP_VS_PLAIN)}"
        )
    peak = max(large.peak_mb, large.tree_mb)
    growth = large.tree_mb / small.tree_mb
    size_ratio = large.export.resources / small.export.resources
    lines.append(
        f"- peak memory at {large.export.resources:,} resources: {large.peak_mb:,.0f} MB RSS "
        f"largest process, {large.tree_mb:,.0f} MB PSS all processes (target < {PEAK_MB} MB): "
        f"{verdict(peak < PEAK_MB)}; {small.export.resources:,} -> "
        f"{large.export.resources:,}: PSS x{growth:.2f} for x{size_ratio:.0f} the resources "
        f"(linear or less: {verdict(growth <= size_ratio)})"
    )
    lines.append(
        f"- start-up: `fhir-hcc --help` {help_run.wall:.2f} s (target < {HELP_SECONDS} s): "
        f"{verdict(help_run.wall < HELP_SECONDS)}; `fhir-hcc cohort` on an empty folder "
        f"{empty_run.wall:.2f} s, {empty_run.cpu:.2f} s CPU, {empty_run.peak_mb:.0f} MB "
        f"(target < {EMPTY_COHORT_SECONDS} s): {verdict(empty_run.wall < EMPTY_COHORT_SECONDS)}"
    )
    lines.append("- cohort found = cohort planted (the same patient ids) in every run: met")
    return "\n".join(lines)


def code_under_test() -> str:
    """Which fhir_hcc the subprocesses import (PYTHONPATH can point elsewhere), and its commit."""
    spec = importlib.util.find_spec("fhir_hcc")
    if spec is None or spec.origin is None:
        raise BenchmarkError("fhir_hcc is not importable by this interpreter")
    package = Path(spec.origin).parent
    root = package.parent

    def git(*command: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *command], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit or Path(git("rev-parse", "--show-toplevel") or "/") != root:
        return f"fhir_hcc from {package} (not a git checkout)"
    dirty = git("status", "--porcelain", "--", "fhir_hcc", "mappings")
    state = "with uncommitted changes" if dirty else "clean"
    return f"fhir_hcc from {package} at commit {commit} ({state} fhir_hcc/ and mappings/)"


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def print_profile(path: Path, limit: int) -> None:
    stats = pstats.Stats(str(path))
    for order in ("tottime", "cumulative"):
        print(f"\n--- cProfile, top {limit} by {order} ({path}) ---")
        stats.sort_stats(order).print_stats(limit)


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = sorted(resource_count(part.strip()) for part in text.split(",") if part.strip())
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"--sizes: {error}") from None
    if len(sizes) != 2:
        raise argparse.ArgumentTypeError("--sizes: two sizes, e.g. 1m,2m")
    return sizes


# ---------------------------------------------------------------------------------------------
# The whole benchmark
# ---------------------------------------------------------------------------------------------


def benchmark(args: argparse.Namespace) -> Iterator[str]:
    """The measurements in order; yields the report's parts."""
    small_size, large_size = args.sizes
    small = ensure_export(small_size, False, args)
    large = ensure_export(large_size, False, args)
    gz = None if args.no_gzip else ensure_export(small_size, True, args)
    yield f"The export ({args.shape} shape):\n\n{mix_table(small.manifest)}"
    load_before = load_average()
    help_run = run_help()
    with tempfile.TemporaryDirectory(prefix="cohort-empty-") as empty:
        empty_run = run_cohort(Path(empty), args.cohort_args)
    print("baseline: orjson.loads of every line ...", file=sys.stderr, flush=True)
    orjson_rate = {
        small_size: baseline(small, args.repeat),
        large_size: baseline(large, args.repeat),
    }
    extra = args.cohort_args
    warm_page_cache(small.files)
    two = measure("default workers", small, extra, args.repeat)
    one = measure("--workers 1", small, [*extra, "--workers", "1"], args.repeat)
    zipped = None
    if gz is not None:
        warm_page_cache(gz.files)
        zipped = measure("gzipped, default workers", gz, extra, args.repeat)
    warm_page_cache(large.files)
    big = measure("default workers", large, extra, args.repeat)
    rows = [two, one, *([zipped] if zipped else []), big]
    yield runs_table(rows, orjson_rate)
    yield (
        "Baseline, one process reading and `orjson.loads`-ing every line: "
        + ", ".join(f"{n:,} resources {thousands(r)}/s" for n, r in orjson_rate.items())
    )
    yield targets(two, one, zipped, two, big, orjson_rate[small_size], help_run, empty_run)
    yield (
        f"load average (1, 5, 15 min) before: {load_before}; after: {load_average()}; "
        f"{os.cpu_count()} CPUs; runs per figure: {args.repeat} (wall: median, (best))"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=parse_sizes, default=parse_sizes(SIZES),
        help=f"two export sizes: the smaller for speed, the larger for memory (default {SIZES})",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help=f"--sizes {QUICK_SIZES}")
    parser.add_argument("--shape", default=DEFAULT_SHAPE, help="export shape (bench/shapes/)")
    parser.add_argument("--no-gzip", action="store_true", help="skip the gzipped export")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DATA_DIR,
        help="where exports are kept (default bench/data; a tmpfs such as /dev/shm/x keeps "
        "them in memory, out of reach of disk I/O and page-cache eviction)",
    )
    parser.add_argument("--seed", type=int, default=2004, help="export seed (default 2004)")
    parser.add_argument("--patients", type=int, help="same patient count at both sizes")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure (median)")
    parser.add_argument(
        "--cohort-args",
        type=shlex.split,
        default=[],
        help='extra arguments for every `fhir-hcc cohort`, e.g. "--config study.toml"',
    )
    parser.add_argument("--profile", type=Path, help="also profile one worker on the 1 M export")
    parser.add_argument("--top", type=int, default=30, help="functions listed from the profile")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = parse_sizes(QUICK_SIZES)
    # SIGTERM unwinds like Ctrl-C, so the cohort run in progress is stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    try:
        code_before = code_under_test()
        for part in benchmark(args):
            print(part + "\n", flush=True)
        code_after = code_under_test()
        print(code_after)
        if code_after != code_before:  # others commit to the same checkout while we measure
            print(f"warning: the code changed during the runs; at the start: {code_before}")
        print(f"cohort command arguments: {shlex.join(args.cohort_args) or '(defaults)'}")
        if args.profile:
            small = default_directory(
                args.sizes[0], False, args.patients, args.data_dir, args.shape
            )
            print(f"profiling {small} ...", file=sys.stderr, flush=True)
            # cProfile sees one process: the profiled run maps everything itself.
            run_cohort(small, [*args.cohort_args, "--workers", "1"], profile=args.profile)
            print_profile(args.profile, args.top)
    except BenchmarkError as error:
        print(f"cohort_benchmark: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cohort_benchmark: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
