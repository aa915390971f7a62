"""Random cohorts for property-based tests, in the per-patient days format of `reference_days`.

Times are whole days, as the cohort stage produces them; half the cohorts use quarter-year
steps so that tied times (the hard case for estimators) are common.
"""

from __future__ import annotations

import pandas as pd
from hypothesis import strategies as st

GROUPS = ("combination_chemo", "single_agent_chemo", "y90", "sequential")
SITES = ("intrahepatic", "extrahepatic", "both")
QUARTER = 91


@st.composite
def patients(draw: st.DrawFn, step: int, longest: int, groups: tuple[str, ...]) -> dict:
    os_days = draw(st.integers(0 if step == 1 else 1, longest)) * step
    died = draw(st.booleans())
    recurred = os_days >= step and draw(st.booleans())
    rfs_days = draw(st.integers(1, os_days // step)) * step if recurred else os_days
    return {
        "os_days": os_days,
        "os_event": int(died),
        "rfs_days": rfs_days,
        "rfs_event": int(died or recurred),
        "cr_status": 1 if recurred else (2 if died else 0),
        "group": draw(st.sampled_from(groups)),
        "major": draw(st.integers(0, 1)),
        "necrosis": draw(st.integers(0, 1)),
        "hbv": draw(st.integers(0, 1)),
        "age": draw(st.integers(18, 85)),
        "sex": draw(st.sampled_from(("male", "female"))),
        "rec_site": draw(st.sampled_from(SITES)) if recurred else "",
    }


@st.composite
def day_cohorts(draw: st.DrawFn, min_size: int = 8, max_size: int = 50) -> pd.DataFrame:
    coarse = draw(st.booleans())
    step, longest = (QUARTER, 40) if coarse else (1, 4000)
    # The reference level (combination chemotherapy) is always present, as in real cohorts.
    others = draw(st.lists(st.sampled_from(GROUPS[1:]), max_size=3, unique=True))
    groups = (GROUPS[0], *others)
    rows = draw(st.lists(patients(step, longest, groups), min_size=min_size, max_size=max_size))
    cohort = pd.DataFrame(rows)
    cohort.insert(0, "patient_id", [f"R{i:03d}" for i in range(len(cohort))])
    return cohort
