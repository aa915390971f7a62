"""Table 1 by group: counts and summaries per group, the usual test, and the standardised mean
difference (SMD) of each characteristic.

- Categorical: n (%) of the column's patients; Fisher's exact test (the r x c generalisation,
  Freeman-Halton: tables with the same margins, summing those no more likely than the one seen,
  as R's `fisher.test`) while that enumeration stays small, otherwise Pearson's chi-square
  (R's `chisq.test(correct = FALSE)`); SMD of Yang and Dalton (2012) over the levels.
- Continuous: median (IQR) and range; Kruskal-Wallis test (R's `kruskal.test`, tie-corrected);
  SMD (difference of means over the pooled SD), on log10 for AFP, which spans orders of
  magnitude (an AFP of 0, below detection, is left out of that SMD only).
- More than two groups: the SMD is the mean over all pairs of groups (as R's tableone).

Patients whose value is missing ("unknown" levels are values, not missing) are left out of a
continuous row's test and SMD, and counted in the row.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, kruskal

from fhir_hcc.contract import CATEGORIES

CATEGORICAL = ("sex", "hbv_status", "treatment_group", "resection_extent", "complete_necrosis")
# Continuous characteristics and whether their SMD is on the log10 scale.
CONTINUOUS = {"age_at_surgery": False, "afp_pre_downstaging": True, "afp_pre_surgery": True}
HIDDEN_WHEN_EMPTY = ("other", "unknown")
# Fisher's exact test enumerates at most this many tables; beyond it, chi-square.
MAX_TABLES = 200_000


@dataclass(frozen=True)
class Summary:
    """A continuous characteristic in one column: `n` with a value, median, IQR and range."""

    n: int
    median: float
    q1: float
    q3: float
    low: float
    high: float


@dataclass(frozen=True)
class Characteristic:
    """One characteristic: per column (overall first, then each group) the level counts
    (categorical) or a Summary (continuous), and the comparison across groups."""

    variable: str
    levels: tuple[str, ...]  # shown levels; empty for a continuous characteristic
    counts: tuple[tuple[int, ...], ...]  # per column, per level
    summaries: tuple[Summary | None, ...]  # per column; None where nobody has a value
    test: str | None = None
    p_value: float | None = None
    smd: float | None = None


@dataclass(frozen=True)
class TableOne:
    by: str | None  # the grouping factor; None for the overall column only
    columns: tuple[str, ...]  # "overall", then the groups
    sizes: tuple[int, ...]
    rows: tuple[Characteristic, ...]


def table_one(
    cohort: pd.DataFrame, by: str | None = "treatment_group", show_empty_levels: bool = False
) -> TableOne:
    """Table 1 of `cohort` (contract types), by the levels of `by` that somebody has."""
    groups = [] if not by else [level for level in CATEGORIES[by] if (cohort[by] == level).any()]
    masks = [pd.Series(True, index=cohort.index)] + [cohort[by] == level for level in groups]
    rows = []
    for variable in CATEGORICAL:
        if variable != by:
            rows.append(_categorical(cohort, variable, masks, show_empty_levels))
    for variable, logged in CONTINUOUS.items():
        if variable in cohort.columns:
            rows.append(_continuous(cohort, variable, masks, logged))
    sizes = tuple(int(mask.sum()) for mask in masks)
    return TableOne(by or None, ("overall", *groups), sizes, tuple(rows))


def _categorical(
    cohort: pd.DataFrame, variable: str, masks: list[pd.Series], show_empty: bool
) -> Characteristic:
    values = cohort[variable]
    levels = tuple(
        level
        for level in CATEGORIES[variable]
        if show_empty or level not in HIDDEN_WHEN_EMPTY or (values == level).any()
    )
    counts = tuple(
        tuple(int(((values == level) & mask).sum()) for level in levels) for mask in masks
    )
    row = Characteristic(variable, levels, counts, (None,) * len(masks))
    if len(masks) < 3:
        return row
    table = np.array(counts[1:], dtype=int).T  # level x group
    table = table[table.sum(1) > 0]
    if table.shape[0] < 2:
        return row
    test, p = contingency_test(table)
    return replace(row, test=test, p_value=p, smd=_mean_pairwise(table.T, categorical_smd))


def _continuous(
    cohort: pd.DataFrame, variable: str, masks: list[pd.Series], logged: bool
) -> Characteristic:
    values = pd.to_numeric(cohort[variable], errors="coerce").astype(float)
    summaries = tuple(_summary(values[mask].dropna()) for mask in masks)
    row = Characteristic(variable, (), (), summaries)
    samples = [values[mask].dropna().to_numpy() for mask in masks[1:]]
    samples = [sample for sample in samples if len(sample)]
    # Kruskal-Wallis needs two groups with values and some variation among them.
    if len(samples) < 2 or len(np.unique(np.concatenate(samples))) < 2:
        return row
    p = float(kruskal(*samples).pvalue)
    scaled = [np.log10(s[s > 0]) if logged else s for s in samples]
    return replace(row, test="Kruskal-Wallis", p_value=p, smd=_mean_pairwise(scaled, mean_smd))


def _summary(values: pd.Series) -> Summary | None:
    if values.empty:
        return None
    q1, median, q3 = np.percentile(values, [25, 50, 75])  # R's quantile type 7
    return Summary(len(values), median, q1, q3, values.min(), values.max())


def contingency_test(table: np.ndarray) -> tuple[str, float]:
    """Fisher's exact test (r x c) where the enumeration is small enough, else chi-square."""
    p = fisher_exact(table)
    if p is not None:
        return "Fisher's exact", p
    return "chi-square", float(chi2_contingency(table, correction=False).pvalue)


def fisher_exact(table: np.ndarray, max_tables: int = MAX_TABLES) -> float | None:
    """Sum of the probabilities (multivariate hypergeometric, margins fixed) of every table no
    more likely than the observed one, with R's relative tolerance of 1e-7; None when there
    are more than `max_tables` tables with these margins."""
    rows, columns = [int(r) for r in table.sum(1)], [int(c) for c in table.sum(0)]
    log_factorial = [math.lgamma(n + 1) for n in range(int(table.sum()) + 1)]
    constant = sum(log_factorial[n] for n in (*rows, *columns)) - log_factorial[sum(rows)]
    observed = sum(log_factorial[int(n)] for n in table.ravel())
    threshold = observed - math.log1p(1e-7)
    total = 0.0
    for count, cells in enumerate(_cell_sums(rows, columns, log_factorial)):
        if count >= max_tables:
            return None
        if cells >= threshold:
            total += math.exp(constant - cells)
    return min(1.0, total)


def _cell_sums(rows: list[int], columns: list[int], log_factorial: list[float]) -> Iterator[float]:
    """For every table with these margins, the sum of log(n!) over its cells."""
    if not columns:
        yield 0.0
        return
    for column in _splits(columns[0], rows):
        here = sum(log_factorial[n] for n in column)
        remaining = [r - c for r, c in zip(rows, column, strict=True)]
        for rest in _cell_sums(remaining, columns[1:], log_factorial):
            yield here + rest


def _splits(total: int, caps: list[int]) -> Iterator[list[int]]:
    """Ways to put `total` into len(caps) cells, each at most its cap."""
    if len(caps) == 1:
        if total <= caps[0]:
            yield [total]
        return
    room = sum(caps[1:])
    for first in range(max(0, total - room), min(total, caps[0]) + 1):
        for rest in _splits(total - first, caps[1:]):
            yield [first, *rest]


def categorical_smd(a: np.ndarray, b: np.ndarray) -> float:
    """Yang and Dalton's SMD of two count vectors over the same levels."""
    p, q = a / a.sum(), b / b.sum()
    diff = (p - q)[1:]
    pk, qk = p[1:], q[1:]
    covariance = -(np.outer(pk, pk) + np.outer(qk, qk)) / 2
    np.fill_diagonal(covariance, (pk * (1 - pk) + qk * (1 - qk)) / 2)
    return float(np.sqrt(max(diff @ np.linalg.pinv(covariance) @ diff, 0.0)))


def mean_smd(a: np.ndarray, b: np.ndarray) -> float:
    """|difference of means| / sqrt((var a + var b) / 2); NaN where a variance is undefined."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    spread = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    return abs(float(a.mean() - b.mean())) / spread if spread > 0 else float("nan")


def _mean_pairwise(samples: list[np.ndarray], smd: Callable[..., float]) -> float | None:
    values = [smd(a, b) for a, b in itertools.combinations(samples, 2) if len(a) and len(b)]
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else None
