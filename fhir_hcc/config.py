"""Study settings for the cohort stage: the `[cohort]` table of a study TOML file.

Every setting has a documented default reproducing the 2004 paper's choices (see
docs/config.md). The `[analysis]` table of the same file belongs to the analysis stage.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fhir_hcc.errors import ConfigError


@dataclass(frozen=True, slots=True)
class CohortConfig:
    # Study period; the windowed date is the start of downstaging or the surgery date.
    study_start: date = date(1993, 9, 1)
    study_end: date = date(2002, 6, 30)
    window_applies_to: str = "downstaging_start"  # or "surgery_date"
    # Data cut-off: nothing later counts; "administrative" censors survivors at the cut-off.
    cutoff: date = date(2003, 12, 31)
    censoring: str = "last_contact"  # or "administrative"
    # A recurrence within this many days of surgery is residual disease, not recurrence.
    residual_window_days: int = 30
    # Pathology dated within this many days after surgery belongs to the resected specimen.
    pathology_window_days: int = 7
    # Downstaging counts from this many days before the diagnosis date (late-recorded diagnoses).
    dx_margin_days: int = 30
    # Treatments before (diagnosis - dx_margin_days) still count when they belong to the same
    # course (no gap longer than this) as those after it: diagnoses are often recorded late.
    course_gap_days: int = 90
    # Drugs within +/- this many days of a doxorubicin dose form one combination cycle.
    combination_window_days: int = 4
    # A gap longer than this between administrations starts a new cycle.
    cycle_gap_days: int = 7
    # Recurrence evidence within this many days of the first one describes the same event.
    recurrence_site_window_days: int = 30
    # "both" keeps liver + extrahepatic first recurrences apart; "extrahepatic" folds them in.
    both_sites_as: str = "both"
    # Resources dated more than this many days after death are flagged (time zones, late entry).
    after_death_tolerance_days: int = 1
    # Downstaging outside the paper (TACE, ablation) before surgery excludes unless allowed.
    allow_tace_ablation: bool = False
    # Combined hepatocellular-cholangiocarcinoma (ICD-O-3 8180/3) counts as HCC only if allowed.
    allow_combined_hcc_cc: bool = False
    # Empty: a dateTime's calendar date is the one written in its own offset (the site's local
    # date). An IANA zone (e.g. "Asia/Hong_Kong"): convert every offset dateTime to that zone.
    site_timezone: str = ""
    # Extra mapping directories layered over the shipped `mappings/` (site codes).
    mappings: tuple[str, ...] = ()

    def zone(self) -> ZoneInfo | None:
        if not self.site_timezone:
            return None
        try:
            return ZoneInfo(self.site_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"site_timezone: unknown time zone {self.site_timezone!r}") from None


_CHOICES = {
    "window_applies_to": {"downstaging_start", "surgery_date"},
    "censoring": {"last_contact", "administrative"},
    "both_sites_as": {"both", "extrahepatic"},
}


def load_config(path: str | Path | None = None) -> CohortConfig:
    """Read the `[cohort]` table of a study TOML file; defaults for whatever it leaves out."""
    if path is None:
        return CohortConfig()
    path = Path(path)
    config = config_from_dict(study_table(path, "cohort"), source=str(path))
    # Relative mapping directories are relative to the config file.
    return replace(config, mappings=tuple(str(path.parent / p) for p in config.mappings))


def study_table(path: Path, name: str) -> dict[str, Any]:
    """One table (`[cohort]`, `[analysis]`) of a study TOML file; empty when it has none."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read study config: {error}") from None
    table = data.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return table


def config_from_dict(table: dict[str, Any], source: str = "config") -> CohortConfig:
    known = {f.name: f for f in fields(CohortConfig)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{source}: [cohort] {key}: unknown setting")
        values[key] = _coerce(key, value, getattr(CohortConfig(), key), source)
    config = CohortConfig(**values)
    config.zone()
    return config


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    where = f"{source}: [cohort] {key}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false")
        return value
    if isinstance(default, date):
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise ConfigError(f"{where}: expected a date YYYY-MM-DD, got {value!r}") from None
    if isinstance(default, int):
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}: expected a whole number >= 0")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of directory names")
        return tuple(value)
    if key in _CHOICES and value not in _CHOICES[key]:
        allowed = ", ".join(sorted(_CHOICES[key]))
        raise ConfigError(f"{where}: {value!r} is not one of {allowed}")
    return str(value)
