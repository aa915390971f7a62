"""Analysis settings: the `[analysis]` table of a study TOML file, with documented defaults.

The defaults reproduce the primary analysis of the 2004 paper (docs/analysis.md). Other tables
of the same file (`[cohort]`) belong to the cohort stage and are ignored here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fhir_hcc.analysis.cohort_table import TIME_ORIGINS
from fhir_hcc.analysis.compare import COVARIATES, FACTORS
from fhir_hcc.config import study_table
from fhir_hcc.errors import ConfigError


@dataclass(frozen=True, slots=True)
class AnalysisConfig:
    # Time zero: "surgery" (primary), "downstaging_start" or "diagnosis" (needs a dx_date column).
    time_origin: str = "surgery"
    # Survival and cumulative incidence are reported at these times (months).
    landmarks_months: tuple[float, ...] = (12.0, 36.0, 60.0)
    # Restricted mean survival time: the area under the curve up to this time (months).
    rmst_months: float = 60.0
    # Width of the number-at-risk intervals under the curves (months).
    at_risk_interval_months: float = 12.0
    # Level of every confidence interval.
    confidence_level: float = 0.95
    # Factors whose groups are compared by the log-rank test (overall survival).
    logrank_factors: tuple[str, ...] = (
        "treatment_group",
        "resection_extent",
        "complete_necrosis",
        "hbv_status",
    )
    # Stratify every log-rank test by this factor too (e.g. "hbv_status"); "" for none.
    logrank_strata: str = ""
    # Covariates of the univariable Cox models (overall survival) and Fine-Gray models
    # (recurrence, death without recurrence competing), one model each. log_afp is log10 of
    # the AFP before surgery.
    cox_univariable: tuple[str, ...] = (
        "treatment_group",
        "resection_extent",
        "complete_necrosis",
        "hbv_status",
        "age_at_surgery",
        "log_afp",
    )
    # Covariates of the multivariable Cox and Fine-Gray models; empty for none.
    cox_multivariable: tuple[str, ...] = ("resection_extent", "complete_necrosis")
    # Candidates added to the multivariable Cox model, in order, while the guard allows.
    cox_candidates: tuple[str, ...] = ("log_afp",)
    # The multivariable model is fitted only with at least this many events per parameter.
    min_events_per_variable: float = 10.0
    # A proportional-hazards test with p below this is reported as evidence against PH.
    ph_alpha: float = 0.05
    # Small-cell suppression for reports that leave the hospital: counts from 1 to k - 1 are
    # shown as "<k". 0 turns it off.
    suppress_below: int = 0
    # Table 1 compares the groups of this factor; "" for the overall column only.
    table_one_by: str = "treatment_group"
    # Table 1 hides "other" / "unknown" levels nobody has unless this is true.
    show_empty_levels: bool = False


def load_analysis_config(path: str | Path | None = None) -> AnalysisConfig:
    """Read the `[analysis]` table of a study TOML file; defaults for whatever it leaves out."""
    if path is None:
        return AnalysisConfig()
    path = Path(path)
    return analysis_config_from_dict(study_table(path, "analysis"), source=str(path))


def analysis_config_from_dict(table: dict[str, Any], source: str = "config") -> AnalysisConfig:
    known = {field.name for field in fields(AnalysisConfig)}
    defaults = AnalysisConfig()
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{source}: [analysis] {key}: unknown setting")
        values[key] = _coerce(key, value, getattr(defaults, key), f"{source}: [analysis] {key}")
    return AnalysisConfig(**values)


# Settings whose values come from a fixed vocabulary.
_CHOICES: dict[str, tuple[str, ...]] = {
    "time_origin": tuple(TIME_ORIGINS),
    "logrank_factors": tuple(FACTORS),
    "logrank_strata": ("", *FACTORS),
    "cox_univariable": COVARIATES,
    "cox_multivariable": COVARIATES,
    "cox_candidates": COVARIATES,
    "table_one_by": ("", *FACTORS),
}


def _coerce(key: str, value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false")
        return value
    if isinstance(default, tuple):
        return _coerce_list(key, value, default, where)
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}: expected a whole number >= 0")
        return value
    if isinstance(default, float):
        return _coerce_number(key, value, where)
    if not isinstance(value, str) or value not in _CHOICES[key]:
        raise ConfigError(f"{where}: expected one of {', '.join(_CHOICES[key])}")
    return value


def _coerce_list(key: str, value: Any, default: tuple, where: str) -> tuple:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list")
    if default and isinstance(default[0], float):
        return tuple(_coerce_number(key, item, where) for item in value)
    allowed = _CHOICES[key]
    unknown = [item for item in value if item not in allowed]
    if unknown:
        raise ConfigError(f"{where}: {unknown[0]!r} is not one of {', '.join(allowed)}")
    return tuple(value)


def _coerce_number(key: str, value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: expected a number > 0")
    if key in ("confidence_level", "ph_alpha") and value >= 1:
        raise ConfigError(f"{where}: expected a number between 0 and 1")
    return float(value)
