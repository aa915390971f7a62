"""Benchmark the cohort stage (`fhir-hcc cohort`) end to end on synthetic NDJSON exports.

Usage (from the repository root; no Makefile needed):

    .venv/bin/python bench/cohort_benchmark.py                        # quick set: 100k, 250k
    .venv/bin/python bench/cohort_benchmark.py --sizes 100k,1m,2m --repeat 5
    .venv/bin/python bench/cohort_benchmark.py --sizes 1m --cohort-args "--workers 1"
    .venv/bin/python bench/cohort_benchmark.py --sizes 1m --profile bench/data/cohort-1m.prof
    .venv/bin/python bench/cohort_benchmark.py --sizes 1m --gzip
    .venv/bin/python bench/cohort_benchmark.py --data-dir /dev/shm/fhir-hcc-bench --sizes 2m
    PYTHONPATH=/tmp/other-checkout .venv/bin/python bench/cohort_benchmark.py   # another version

For each size, the export `bench/data/export-N` (git-ignored; --data-dir to keep it elsewhere) is
made by `bench/make_export.py` if it is missing or stale. The cohort command then runs in a fresh
process per size and repetition. The table gives, per size: wall time, median and (best) of the
runs, interpreter start and imports included; CPU seconds of the command and its workers
(`os.wait4`); resources per CPU second net of the start-up cost (the same command on an empty
directory); peak RSS of the largest process and peak PSS of all its processes together (sampled
from /proc every 0.25 s); and the cohort found against the salvage patients planted, which must
not be empty. Two floors are timed on the same files in this process: reading lines, and
`orjson.loads` per line. Every figure is warm-cache: the files are read once, untimed, first.
With --profile, one more run of the largest size, in one process (`--workers 1`) under cProfile,
writes a .prof file and prints the top functions. The footer names the fhir_hcc code measured
(path, commit, uncommitted changes). On a shared machine compare CPU seconds and best times.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

# make_export is a sibling script, not an installed module.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_export import (
    DATA_DIR,
    FORMAT_VERSION,
    default_directory,
    make_export,
    ndjson_files,
    read_manifest,
    resource_count,
)

QUICK_SIZES = "100k,250k"
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


class BenchmarkError(Exception):
    """A failed run or an empty cohort; the message is one line."""


@dataclass(frozen=True, slots=True)
class Run:
    """One cohort command: wall and CPU seconds, peak memory in MB, and the cohort it found."""

    wall: float
    cpu: float
    peak_mb: float  # RSS of the largest process (the command or one of its workers)
    tree_mb: float  # PSS of all its processes together, sampled
    included: int


@dataclass(frozen=True, slots=True)
class SizeResult:
    resources: int
    megabytes: float
    patients: int
    planted: int
    runs: list[Run]
    lines_per_s: float | None
    orjson_per_s: float | None

    @property
    def wall(self) -> float:
        return statistics.median(run.wall for run in self.runs)

    @property
    def peak_mb(self) -> float:
        return max(run.peak_mb for run in self.runs)

    @property
    def tree_mb(self) -> float:
        return max(run.tree_mb for run in self.runs)


# ---------------------------------------------------------------------------------------------
# Running the cohort command
# ---------------------------------------------------------------------------------------------


def run_cohort(source: Path, extra: list[str], profile: Path | None = None) -> Run:
    """`fhir-hcc cohort SOURCE [extra]` in a fresh interpreter, measured as one process tree."""
    with tempfile.TemporaryDirectory(prefix="cohort-bench-") as scratch:
        work = Path(scratch)
        flow = work / "flow.json"
        args = ["cohort", str(source), "--out", str(work / "cohort.csv"), "--flow", str(flow)]
        code = [PROFILED_CLI, str(profile.resolve())] if profile else [CLI]
        with (work / "stderr.txt").open("w+b") as stderr:
            start = time.perf_counter()
            # cwd: with `-c` the working directory comes first on sys.path; a scratch directory
            # leaves the choice of fhir_hcc to PYTHONPATH and the installed package.
            process = subprocess.Popen(
                [sys.executable, "-c", *code, *args, *extra],
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # its own process group, so that stop() reaches workers
            )
            sampler = TreeMemory(process.pid)
            sampler.start()
            try:
                # wait4, not RUSAGE_CHILDREN (a maximum over every child so far): this child
                # and the workers it waited for, CPU summed, ru_maxrss of the largest.
                _, status, usage = os.wait4(process.pid, 0)
            except BaseException:  # interrupted: leave no cohort run behind
                with contextlib.suppress(ProcessLookupError, ChildProcessError):
                    os.killpg(process.pid, signal.SIGTERM)
                    os.waitpid(process.pid, 0)
                raise
            finally:
                tree_mb = sampler.stop()
            wall = time.perf_counter() - start
            process.returncode = os.waitstatus_to_exitcode(status)
            if process.returncode != 0:
                stderr.seek(0)
                last = (stderr.read().decode(errors="replace").strip().splitlines() or ["?"])[-1]
                raise BenchmarkError(f"{source}: cohort exited {process.returncode}: {last}")
        included = orjson.loads(flow.read_bytes())["included"]
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall, cpu, usage.ru_maxrss / 1024, tree_mb, included)  # ru_maxrss is in KiB


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
# Floors: the same files, read without the cohort step
# ---------------------------------------------------------------------------------------------


def open_ndjson(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def warm_page_cache(files: list[Path]) -> None:
    """Read the files once, untimed, so that every figure is warm-cache (CPU, not disk)."""
    for path in files:
        with path.open("rb") as handle:
            while handle.read(1 << 23):
                pass


def floor_rate(files: list[Path], parse: Callable[[bytes], Any] | None) -> float:
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
# Exports and the measurement of one size
# ---------------------------------------------------------------------------------------------


def ensure_export(resources: int, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The export of this size, made first if missing or made with other settings."""
    directory = default_directory(resources, args.gzip, args.patients, args.data_dir)
    manifest = read_manifest(directory)
    wanted = {
        "format_version": FORMAT_VERSION,
        "resources": resources,
        "seed": args.seed,
        "gzip": args.gzip,
    }
    if args.patients:
        wanted["patients"] = args.patients
    if manifest is None or any(manifest.get(k) != v for k, v in wanted.items()):
        print(f"generating {directory} ...", file=sys.stderr, flush=True)
        manifest = make_export(
            resources, directory, seed=args.seed, compress=args.gzip, patients=args.patients
        )
    return directory, manifest


def measure(resources: int, args: argparse.Namespace) -> SizeResult:
    directory, manifest = ensure_export(resources, args)
    files = list(ndjson_files(directory))
    warm_page_cache(files)
    lines_rate = orjson_rate = None
    if not args.no_floors:
        lines_rate = floor_rate(files, None)
        orjson_rate = floor_rate(files, orjson.loads)
    runs = []
    for _ in range(args.repeat):
        print(f"cohort run on {resources:,} resources ...", file=sys.stderr, flush=True)
        runs.append(run_cohort(directory, args.cohort_args))
    planted = manifest["planted"].get("salvage", 0)
    if any(run.included == 0 for run in runs):
        raise BenchmarkError(f"{directory}: the cohort is empty ({planted} salvage planted)")
    return SizeResult(
        resources=resources,
        megabytes=sum(manifest["bytes"].values()) / 1e6,
        patients=manifest["patients"],
        planted=planted,
        runs=runs,
        lines_per_s=lines_rate,
        orjson_per_s=orjson_rate,
    )


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def thousands(rate: float | None) -> str:
    return "-" if rate is None else f"{rate / 1000:,.0f} k"


def table(results: list[SizeResult], startup: Run) -> str:
    """A Markdown table. Wall time: median and (best) of the runs, as a shared machine slows some
    runs; the "net" rate leaves out the start-up CPU time (imports, mappings)."""
    header = (
        "| resources | MB | patients | cohort found / planted | wall s | resources/s | CPU s "
        "| resources per CPU s, net | peak RSS MB, largest process | peak PSS MB, all processes "
        "| lines/s | orjson.loads/s |"
    )
    rows = [header, "|" + "---:|" * (header.count("|") - 1)]
    for result in results:
        best = min(run.wall for run in result.runs)
        cpu = statistics.median(run.cpu for run in result.runs)
        rate, best_rate = result.resources / result.wall, result.resources / best
        rows.append(
            f"| {result.resources:,} | {result.megabytes:,.0f} | {result.patients:,} "
            f"| {result.runs[0].included} / {result.planted} | {result.wall:.2f} ({best:.2f}) "
            f"| {thousands(rate)} ({thousands(best_rate)}) | {cpu:.2f} "
            f"| {thousands(result.resources / max(cpu - startup.cpu, 1e-9))} "
            f"| {result.peak_mb:,.0f} | {result.tree_mb:,.0f} "
            f"| {thousands(result.lines_per_s)} | {thousands(result.orjson_per_s)} |"
        )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    rows.append(
        f"\nstart-up (the same command on an empty directory): {startup.wall:.2f} s wall, "
        f"{startup.cpu:.2f} s CPU, {startup.peak_mb:.0f} MB peak RSS; "
        f"load average now (1, 5, 15 min): {load} on {os.cpu_count()} CPUs"
    )
    return "\n".join(rows)


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


def print_profile(path: Path, limit: int) -> None:
    stats = pstats.Stats(str(path))
    for order in ("tottime", "cumulative"):
        print(f"\n--- cProfile, top {limit} by {order} ({path}) ---")
        stats.sort_stats(order).print_stats(limit)


def parse_sizes(text: str) -> list[int]:
    try:
        return [resource_count(part.strip()) for part in text.split(",") if part.strip()]
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"--sizes: {error}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=parse_sizes, default=parse_sizes(QUICK_SIZES),
        help=f"comma-separated resource counts, e.g. 100k,1m,2m (default {QUICK_SIZES})",
    )  # fmt: skip
    parser.add_argument("--gzip", action="store_true", help="benchmark .ndjson.gz exports")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DATA_DIR,
        help="where exports are kept (default bench/data; a tmpfs such as /dev/shm/x keeps "
        "them in memory, out of reach of disk I/O and page-cache eviction)",
    )
    parser.add_argument("--seed", type=int, default=2004, help="export seed (default 2004)")
    parser.add_argument(
        "--patients", type=int, help="same patient count at every size (default N/250)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="cohort runs per size (median)")
    parser.add_argument("--no-floors", action="store_true", help="skip the line/orjson floors")
    parser.add_argument(
        "--cohort-args",
        type=shlex.split,
        default=[],
        help='extra arguments for `fhir-hcc cohort`, e.g. "--workers 1"',
    )
    parser.add_argument("--profile", type=Path, help="also profile the largest size into this")
    parser.add_argument("--top", type=int, default=30, help="functions listed from the profile")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the cohort run in progress is stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    try:
        code_before = code_under_test()
        with tempfile.TemporaryDirectory(prefix="cohort-empty-") as empty:
            startup = run_cohort(Path(empty), args.cohort_args)
        results = [measure(size, args) for size in args.sizes]
        print(table(results, startup))
        code_after = code_under_test()
        print(code_after)
        if code_after != code_before:  # others commit to the same checkout while we measure
            print(f"warning: the code changed during the runs; at the start: {code_before}")
        print(f"cohort command arguments: {shlex.join(args.cohort_args) or '(defaults)'}")
        if args.profile:
            largest = default_directory(max(args.sizes), args.gzip, args.patients, args.data_dir)
            print(f"profiling {largest} ...", file=sys.stderr, flush=True)
            # cProfile sees one process: the profiled run maps everything itself.
            run_cohort(largest, [*args.cohort_args, "--workers", "1"], profile=args.profile)
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
