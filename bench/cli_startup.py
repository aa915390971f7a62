"""How long `fhir-hcc --help` takes, against the bare interpreter measured in the same run.

    .venv/bin/python bench/cli_startup.py [--repeat 30] [--baseline DIR]

Each run is a fresh process doing what the `fhir-hcc` console script does. `--baseline DIR`
adds the same command with an older `fhir_hcc` first on the path (e.g. a `git archive` of an
earlier commit unpacked in DIR). Runs are interleaved, so machine load hits every row alike.
Target (issue 12): under 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HELP = "import sys; sys.argv = ['fhir-hcc', '--help']; from fhir_hcc.cli import main; main()"


def timed(code: str, pythonpath: str | None) -> float:
    environment = dict(os.environ)
    if pythonpath:
        environment["PYTHONPATH"] = pythonpath
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code],
        env=environment,
        cwd=tempfile.gettempdir(),  # not the checkout, whose fhir_hcc `-c` would put first
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--baseline", metavar="DIR", help="an older fhir_hcc to compare with")
    args = parser.parse_args()
    rows = {"python -c pass": ("pass", None), "fhir-hcc --help": (HELP, None)}
    if args.baseline:
        rows["fhir-hcc --help (baseline)"] = (HELP, args.baseline)
    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(args.repeat):
        for name, (code, pythonpath) in rows.items():
            times[name].append(timed(code, pythonpath))
    floor = statistics.median(times["python -c pass"])
    print(f"{'command':<28} {'median s':>9} {'best s':>8} {'x interpreter':>14}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<28} {median:>9.3f} {min(values):>8.3f} {median / floor:>14.1f}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
