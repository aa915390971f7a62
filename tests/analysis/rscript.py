"""Run the R reference (crosscheck.R) on several cohorts in one Rscript call: CSV in, JSON out."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).with_name("crosscheck.R")
R_COLUMNS = [
    "cohort",
    "os_days",
    "os_event",
    "rfs_days",
    "rfs_event",
    "cr_status",
    "group",
    "major",
    "necrosis",
    "hbv",
    "age",
]
INSTALL_HINT = "apt-get install r-base-core r-cran-survival r-cran-cmprsk"
R_VERSIONS_USED: list[str] = []  # filled by r_reference, printed in the terminal summary


def require_rscript() -> str:
    """The Rscript path, or skip the test with the reason printed."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        reason = f"Rscript not found: R cross-checks skipped ({INSTALL_HINT})"
        print(reason)
        pytest.skip(reason)
    return rscript


def r_reference(
    cohorts: dict[str, pd.DataFrame], landmark_days: dict[str, list[float]], workdir: Path
) -> dict:
    """R's results per cohort id, plus `versions` (R, survival, cmprsk)."""
    rscript = require_rscript()
    stacked = pd.concat(
        [days.assign(cohort=cohort_id) for cohort_id, days in cohorts.items()], ignore_index=True
    )
    landmarks = pd.DataFrame(
        [(cohort_id, day) for cohort_id, days in landmark_days.items() for day in days],
        columns=["cohort", "days"],
    )
    paths = [workdir / name for name in ("cohorts.csv", "landmarks.csv", "r.json")]
    stacked[R_COLUMNS].to_csv(paths[0], index=False)
    landmarks.to_csv(paths[1], index=False)
    done = subprocess.run(
        [rscript, str(SCRIPT), *map(str, paths)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"Rscript failed: {done.stderr.strip()}"
    results = json.loads(paths[2].read_text())
    versions = results["versions"]
    R_VERSIONS_USED.append(
        f"{versions['r']}, survival {versions['survival']}, cmprsk {versions['cmprsk']}"
    )
    return results
