"""The result of `analyze`: DataFrames and fitted lifelines objects, and the report.json contract.

`to_dict()` is the public report.json content (docs/analysis.md): estimates are fractions, times
are months, `null` means not reached (medians) or not estimable (beyond the last observation),
and, with small-cell suppression on, counts from 1 to k - 1 are the string "<k".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from fhir_hcc.analysis.baseline import BASELINE_FACTORS
from fhir_hcc.analysis.compare import CoxModel, LogRankTest
from fhir_hcc.analysis.competing import CumulativeIncidence, GrayTest
from fhir_hcc.analysis.config import AnalysisConfig
from fhir_hcc.analysis.finegray import FineGrayModel
from fhir_hcc.analysis.km import KaplanMeier, number_at_risk
from fhir_hcc.analysis.tableone import TableOne
from fhir_hcc.contract import DAYS_PER_MONTH

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Count = int | str


@dataclass(frozen=True)
class FlowStep:
    """One box of the flow diagram: patients reaching `step`, and those left out there by reason."""

    step: str
    n: int
    left_out: dict[str, int]


@dataclass(frozen=True)
class AnalysisResult:
    """Every analysis of one cohort table. Times are months from `config.time_origin`.

    `times` has one row per patient: `patient_id`, the compared factors, `age_at_surgery`,
    `log_afp`, `os_months`, `os_event`, `rfs_months`, `rfs_event` and `cr_status` (1
    recurrence, 2 death without recurrence, 0 censored).
    """

    config: AnalysisConfig
    times: pd.DataFrame
    baseline: pd.DataFrame
    age: dict[str, float]
    recurrence_pattern: pd.DataFrame
    overall_survival: KaplanMeier
    recurrence_free_survival: KaplanMeier
    cumulative_incidence: CumulativeIncidence
    logrank: tuple[LogRankTest, ...]
    rfs_logrank: tuple[LogRankTest, ...]
    gray_tests: tuple[GrayTest, ...]
    cox_univariable: tuple[CoxModel, ...]
    cox_multivariable: CoxModel | None
    candidate_notes: tuple[str, ...]
    fine_gray_univariable: tuple[FineGrayModel, ...]
    fine_gray_multivariable: FineGrayModel | None
    table_one: TableOne
    caveats: tuple[str, ...]
    software: dict[str, str]
    run_date: str
    flow: tuple[FlowStep, ...] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.times)

    def count(self, value: int) -> Count:
        """A count as published: "<k" for 1 to k - 1 when small-cell suppression is on."""
        k = self.config.suppress_below
        return f"<{k}" if 0 < value < k else int(value)

    def at_risk_ticks(self) -> list[float]:
        """Start of each at-risk interval up to the last observation."""
        step = self.config.at_risk_interval_months
        last = float(self.times["os_months"].max())
        return [step * i for i in range(int(last // step) + 1)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.count(self.n),
            "time_origin": self.config.time_origin,
            "time_unit": f"months = days / {DAYS_PER_MONTH}",
            "confidence_level": self.config.confidence_level,
            "suppress_below": self.config.suppress_below or None,
            **{factor: self._levels(factor) for factor in BASELINE_FACTORS},
            "age_at_surgery": self.age,
            "recurrence": self._recurrence(),
            "overall_survival": self._survival(self.overall_survival, "os_months"),
            "recurrence_free_survival": self._survival(self.recurrence_free_survival, "rfs_months"),
            "recurrence_cumulative_incidence": self._incidence(),
            "logrank": [self._logrank(test) for test in self.logrank],
            "rfs_logrank": [self._logrank(test) for test in self.rfs_logrank],
            "gray": [self._gray(test) for test in self.gray_tests],
            "cox": {
                "univariable": [self._cox(model) for model in self.cox_univariable],
                "multivariable": self._cox(self.cox_multivariable),
                "candidates": list(self.candidate_notes),
            },
            "fine_gray": {
                "univariable": [self._fine_gray(model) for model in self.fine_gray_univariable],
                "multivariable": self._fine_gray(self.fine_gray_multivariable),
            },
            "table_one": self._table_one(),
            "caveats": list(self.caveats),
            "provenance": self.provenance,
            "run_date": self.run_date,
            "flow": None if self.flow is None else [self._flow_step(s) for s in self.flow],
            "software": self.software,
        }

    @cached_property
    def figure_objects(self) -> dict[str, Figure]:
        """Every figure as a matplotlib Figure by name (drawn once, on first use)."""
        from fhir_hcc.analysis.plots import draw_figures  # lazy: matplotlib

        return draw_figures(self)

    @cached_property
    def figures(self) -> dict[str, bytes]:
        """Every figure as 300-dpi PNG bytes by name (the HTML and DOCX embed these)."""
        from fhir_hcc.analysis.plots import figure_bytes

        return {name: figure_bytes(f, "png") for name, f in self.figure_objects.items()}

    def to_markdown(self, figure_dir: str | Path | None = None) -> str:
        """The report as Markdown; figures are linked from `figure_dir` when given."""
        from fhir_hcc.analysis.render import render_markdown

        return render_markdown(self, figure_dir)

    def to_html(self) -> str:
        """The report as one self-contained HTML page with the figures embedded."""
        from fhir_hcc.analysis.render import render_html

        return render_html(self)

    def to_docx(self) -> bytes:
        """The report as an editable Word document (.docx), figures and tables included."""
        from fhir_hcc.analysis.docx import render_docx

        return render_docx(self)

    def save_figures(
        self, directory: str | Path, formats: tuple[str, ...] = ("png", "svg", "pdf")
    ) -> list[Path]:
        """Write every figure into `directory` in each format (PNG at 300 dpi, SVG, PDF)."""
        from fhir_hcc.analysis.plots import figure_bytes

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, figure in self.figure_objects.items():
            for fmt in formats:
                path = directory / f"{name}.{fmt}"
                data = self.figures[name] if fmt == "png" else figure_bytes(figure, fmt)
                path.write_bytes(data)
                paths.append(path)
        return paths

    def save_tables(self, directory: str | Path) -> list[Path]:
        """Write every table of the report as CSV (`table1_...csv`, in report order)."""
        import csv

        from fhir_hcc.analysis.blocks import Table
        from fhir_hcc.analysis.report import build_document

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for block in build_document(self):
            if not isinstance(block, Table):
                continue
            path = directory / f"{block.file_stem}.csv"
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(block.header)
                writer.writerows([cell.strip() for cell in row] for row in block.rows)
            paths.append(path)
        return paths

    def _flow_step(self, step: FlowStep) -> dict[str, Any]:
        left_out = {reason: self.count(n) for reason, n in step.left_out.items()}
        return {"step": step.step, "n": self.count(step.n), "left_out": left_out}

    def _levels(self, factor: str) -> dict[str, Count]:
        table = self.baseline[self.baseline["variable"] == factor]
        return {row.level: self.count(row.n) for row in table.itertuples()}

    def _recurrence(self) -> dict[str, Count]:
        counts = self.recurrence_pattern["n"]
        return {"n": self.count(counts["any"])} | {
            site: self.count(n) for site, n in counts.items() if site != "any"
        }

    def _survival(self, km: KaplanMeier, duration_col: str) -> dict[str, Any]:
        ticks = self.at_risk_ticks()
        at_risk = number_at_risk(self.times[duration_col], ticks)
        return {
            "events": self.count(km.events),
            "censored": self.count(km.censored),
            "median_months": _number(km.median),
            "median_ci": [_number(limit) for limit in km.median_ci],
            "at_months": {
                _key(time): {
                    "estimate": _number(row.estimate),
                    "lower": _number(row.lower),
                    "upper": _number(row.upper),
                    "at_risk": self.count(row.at_risk),
                }
                for time, row in km.landmarks.iterrows()
            },
            "median_followup_months": _number(km.median_followup),
            "median_observation_censored_months": _number(km.median_observation_censored),
            "restricted_mean_months": {
                "tau": _number(km.restricted_mean.tau),
                "estimate": _number(km.restricted_mean.estimate),
                "se": _number(km.restricted_mean.se),
                "lower": _number(km.restricted_mean.lower),
                "upper": _number(km.restricted_mean.upper),
                "beyond_follow_up": km.restricted_mean.beyond_follow_up,
            },
            "number_at_risk": {_key(t): self.count(n) for t, n in at_risk.items()},
        }

    def _incidence(self) -> dict[str, Any]:
        incidence = self.cumulative_incidence
        naive = incidence.naive.landmarks["estimate"]
        return {
            "estimator": "Aalen-Johansen; death without recurrence competing; Gray variance",
            "at_months": _estimates(incidence.landmarks.loc[1]),
            "competing_death_at_months": _estimates(incidence.landmarks.loc[2]),
            "one_minus_km_at_months": {_key(t): _number(1 - s) for t, s in naive.items()},
        }

    def _logrank(self, test: LogRankTest) -> dict[str, Any]:
        return {
            "factor": test.factor,
            "strata": test.strata,
            "statistic": _number(test.statistic),
            "df": test.degrees_of_freedom,
            "p_value": _number(test.p_value),
            "not_tested_because": test.reason,
            "groups": {
                level: {
                    "n": self.count(row.n),
                    "observed": self.count(row.observed),
                    "expected": _number(row.expected),
                }
                for level, row in test.groups.iterrows()
            },
            "stratified": None if test.stratified is None else self._logrank(test.stratified),
        }

    def _table_one(self) -> dict[str, Any]:
        one = self.table_one
        rows = {}
        for row in one.rows:
            columns: dict[str, Any] = {}
            for index, column in enumerate(one.columns):
                if row.levels:
                    columns[column] = {
                        level: self.count(row.counts[index][i])
                        for i, level in enumerate(row.levels)
                    }
                else:
                    summary = row.summaries[index]
                    columns[column] = (
                        None
                        if summary is None
                        else {
                            "n": self.count(summary.n),
                            **{
                                k: _number(getattr(summary, k))
                                for k in ("median", "q1", "q3", "low", "high")
                            },
                        }
                    )
            rows[row.variable] = {
                "columns": columns,
                "test": row.test,
                "p_value": _number(row.p_value),
                "smd": _number(row.smd),
            }
        return {
            "by": one.by,
            "sizes": dict(zip(one.columns, map(self.count, one.sizes), strict=True)),
            "rows": rows,
        }

    def _gray(self, test: GrayTest) -> dict[str, Any]:
        return {
            "factor": test.factor,
            "cause": "recurrence" if test.cause == 1 else "death without recurrence",
            "statistic": _number(test.statistic),
            "df": test.degrees_of_freedom,
            "p_value": _number(test.p_value),
            "not_tested_because": test.reason,
            "groups": {
                level: {"n": self.count(row.n), "events": self.count(row.events)}
                for level, row in test.groups.iterrows()
            },
        }

    def _fine_gray(self, model: FineGrayModel | None) -> dict[str, Any] | None:
        if model is None:
            return None
        return {
            "covariates": list(model.covariates),
            "n": self.count(model.n),
            "events": self.count(model.events),
            "competing_events": self.count(model.competing),
            "parameters": model.parameters,
            "fitted": model.fitted,
            "not_fitted_because": model.reason,
            "terms": _records(model.terms),
        }

    def _cox(self, model: CoxModel | None) -> dict[str, Any] | None:
        if model is None:
            return None
        fitter = model.fitter
        alpha = self.config.ph_alpha
        return {
            "covariates": list(model.covariates),
            "n": self.count(model.n),
            "events": self.count(model.events),
            "parameters": model.parameters,
            "fitted": fitter is not None,
            "not_fitted_because": model.reason,
            "terms": _records(model.terms),
            "log_likelihood": _number(fitter.log_likelihood_) if fitter else None,
            "proportional_hazards": {
                "test": "scaled Schoenfeld residuals, km time transform (lifelines)",
                "terms": _records(model.proportional_hazards),
                "violations": model.ph_violations(alpha),
                "conclusion": model.ph_conclusion(alpha),
            },
            "warnings": list(model.warnings),
        }


def _number(value: float | None) -> float | None:
    """JSON has no NaN or infinity: both become null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _key(time: float) -> str:
    return f"{time:g}"


def _estimates(table: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    return {
        _key(time): {name: _number(row[name]) for name in ("estimate", "lower", "upper")}
        for time, row in table.iterrows()
    }


def _records(table: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    return {
        str(index): {column: _number(value) for column, value in row.items()}
        for index, row in table.iterrows()
    }
