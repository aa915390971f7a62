from datetime import date
from pathlib import Path

import pytest

from fhir_hcc.config import CohortConfig, load_config
from fhir_hcc.errors import ConfigError


def test_defaults_are_the_papers_choices() -> None:
    config = load_config(None)
    assert config == CohortConfig()
    assert (config.study_start, config.study_end) == (date(1993, 9, 1), date(2002, 6, 30))
    assert config.cutoff == date(2003, 12, 31)
    assert config.residual_window_days == 30
    assert config.zone() is None


def test_cohort_table_is_read_and_other_tables_ignored(tmp_path: Path) -> None:
    path = tmp_path / "study.toml"
    path.write_text(
        "[cohort]\n"
        'cutoff = 2005-06-30\nwindow_applies_to = "surgery_date"\ncensoring = "administrative"\n'
        'site_timezone = "Asia/Hong_Kong"\nmappings = ["site-codes"]\nallow_tace_ablation = true\n'
        "[analysis]\nanything = 1\n"
    )
    config = load_config(path)
    assert config.cutoff == date(2005, 6, 30)
    assert config.window_applies_to == "surgery_date"
    assert config.allow_tace_ablation is True
    assert config.mappings == (str(tmp_path / "site-codes"),)
    assert str(config.zone()) == "Asia/Hong_Kong"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("cutof = 2005-01-01", r"\[cohort\] cutof: unknown setting"),
        ('cutoff = "soon"', "expected a date"),
        ('censoring = "never"', "is not one of administrative, last_contact"),
        ("residual_window_days = -3", "whole number"),
        ('allow_tace_ablation = "yes"', "true or false"),
        ('site_timezone = "Mars/Olympus"', "unknown time zone"),
    ],
)
def test_bad_settings_name_file_and_key(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "study.toml"
    path.write_text(f"[cohort]\n{line}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_unreadable_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read study config"):
        load_config(tmp_path / "missing.toml")
