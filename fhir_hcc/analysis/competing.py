"""Cumulative incidence of recurrence with death as a competing event (Aalen-Johansen).

lifelines' `AalenJohansenFitter` jitters tied times at random, so published numbers would change
from run to run. This module computes the estimator directly, exactly on ties, and Gray's
variance as R `cmprsk::cuminc` does, so both agree to rounding.

Status codes: 0 censored, 1 the event of interest (recurrence), 2 the competing event (death
without recurrence).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from fhir_hcc.analysis.km import KaplanMeier, kaplan_meier, step_index

CAUSES = (1, 2)


@dataclass(frozen=True)
class CumulativeIncidence:
    """Aalen-Johansen estimates; times in months, estimates as fractions.

    `table` has one row per observed time (index `time`): `at_risk`, `events_<k>`, `survival`
    (free of any event), and per cause k `cif_<k>`, `var_<k>`, `lower_<k>`, `upper_<k>`.
    `landmarks` has one row per (cause, time): `estimate`, `lower`, `upper`.
    `naive` is 1 - Kaplan-Meier with competing events censored: biased upwards, shown only as a
    labelled comparison.
    """

    table: pd.DataFrame
    landmarks: pd.DataFrame
    naive: KaplanMeier


def cumulative_incidence(
    durations: pd.Series,
    status: pd.Series,
    landmarks: Iterable[float] = (12.0, 36.0, 60.0),
    alpha: float = 0.05,
) -> CumulativeIncidence:
    landmarks = tuple(landmarks)
    table = aalen_johansen(durations, status, alpha)
    naive = kaplan_meier(
        durations, (status == 1).astype(int), "1 - KM (competing events censored)", landmarks, alpha
    )
    return CumulativeIncidence(
        table=table,
        landmarks=incidence_landmarks(table, float(durations.max()), landmarks),
        naive=naive,
    )


def aalen_johansen(durations: pd.Series, status: pd.Series, alpha: float = 0.05) -> pd.DataFrame:
    """Cumulative incidence of each cause at every observed time, exact on tied times."""
    frame = pd.DataFrame({"time": np.asarray(durations, dtype=float), "status": np.asarray(status)})
    counts = pd.crosstab(frame["time"], frame["status"]).reindex(columns=[0, *CAUSES], fill_value=0)
    removed = counts.sum(axis=1).to_numpy()
    at_risk = len(frame) - np.concatenate([[0], np.cumsum(removed)[:-1]])
    events = {cause: counts[cause].to_numpy() for cause in CAUSES}
    all_events = sum(events.values())
    survival = np.cumprod(1.0 - all_events / at_risk)
    survival_before = np.concatenate([[1.0], survival[:-1]])
    table = pd.DataFrame(
        {"at_risk": at_risk, **{f"events_{c}": events[c] for c in CAUSES}, "survival": survival},
        index=pd.Index(counts.index.to_numpy(dtype=float), name="time"),
    )
    z = norm.ppf(1 - alpha / 2)
    for cause in CAUSES:
        own, other = events[cause], all_events - events[cause]
        cif = np.cumsum(survival_before * own / at_risk)
        variance = _gray_variance(cif, own, other, at_risk, survival, survival_before)
        lower, upper = _log_log_interval(cif, variance, z)
        table[f"cif_{cause}"] = cif
        table[f"var_{cause}"] = variance
        table[f"lower_{cause}"] = lower
        table[f"upper_{cause}"] = upper
    return table


def incidence_landmarks(
    table: pd.DataFrame, last_observed: float, times: Iterable[float]
) -> pd.DataFrame:
    """Estimates per cause at each time; missing beyond the last observation (as cmprsk)."""
    rows = []
    for cause in CAUSES:
        columns = [f"cif_{cause}", f"lower_{cause}", f"upper_{cause}"]
        for time in times:
            row = step_index(table.index, time)
            if time > last_observed:
                values = (np.nan, np.nan, np.nan)
            elif row < 0:
                values = (0.0, 0.0, 0.0)
            else:
                values = tuple(table[columns].iloc[row])
            rows.append((cause, time, *values))
    landmarks = pd.DataFrame(rows, columns=["cause", "time", "estimate", "lower", "upper"])
    return landmarks.set_index(["cause", "time"])


def _gray_variance(
    cif: np.ndarray,
    own: np.ndarray,
    other: np.ndarray,
    at_risk: np.ndarray,
    survival: np.ndarray,
    survival_before: np.ndarray,
) -> np.ndarray:
    """Gray's (1988) delta-method variance of the cumulative incidence, as `cmprsk::cuminc`.

    Each event time adds three running sums; the variance is read from them where the cause of
    interest has events and carried forward in between (cmprsk's step function).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse_after = np.where(survival > 0, 1.0 / survival, 0.0)
    other_weight = np.where(
        (other > 0) & (survival > 0), _tie_weight(other, at_risk, survival_before), 0.0
    )
    own_weight = np.where(own > 0, _tie_weight(own, at_risk, survival_before), 0.0)
    other_b = cif * inverse_after
    own_b = 1.0 + cif * inverse_after
    sum_bb = np.cumsum(other_b**2 * other_weight + own_b**2 * own_weight)
    sum_ab = np.cumsum(inverse_after * (other_b * other_weight + own_b * own_weight))
    sum_aa = np.cumsum(inverse_after**2 * (other_weight + own_weight))
    at_jumps = pd.Series(sum_bb + cif**2 * sum_aa - 2 * cif * sum_ab).where(own > 0)
    return at_jumps.ffill().fillna(0.0).to_numpy()


def _tie_weight(events: np.ndarray, at_risk: np.ndarray, survival_before: np.ndarray) -> np.ndarray:
    """S(t-)^2 d / n^2, with the hypergeometric tie correction 1 - (d - 1) / (n - 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ties = np.where(events > 1, 1.0 - (events - 1.0) / (at_risk - 1.0), 1.0)
    return survival_before**2 * ties * events / at_risk**2


def _log_log_interval(
    cif: np.ndarray, variance: np.ndarray, z: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise interval on the log(-log) scale, which keeps it inside (0, 1).

    0 before the first event (as a survival curve's 1); undefined (NaN) at 1.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.exp(z * np.sqrt(variance) / (cif * np.abs(np.log(cif))))
        lower = np.where(cif == 0, 0.0, cif**spread)
        upper = np.where(cif == 0, 0.0, cif ** (1.0 / spread))
    return lower, upper
