"""The [analysis] table of a study TOML file."""

from __future__ import annotations

import pytest

from fhir_hcc.analysis import AnalysisConfig, load_analysis_config
from fhir_hcc.errors import ConfigError


def write(tmp_path, text: str):
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


def test_no_file_means_the_documented_defaults():
    config = load_analysis_config(None)
    assert config == AnalysisConfig()
    assert config.landmarks_months == (12.0, 36.0, 60.0)
    assert config.time_origin == "surgery"
    assert config.suppress_below == 0


def test_reads_only_the_analysis_table(tmp_path):
    path = write(
        tmp_path,
        "[cohort]\nstudy_start = 1993-09-01\nunknown_to_us = 1\n\n"
        "[analysis]\nlandmarks_months = [12, 24]\nsuppress_below = 11\n"
        'cox_multivariable = ["complete_necrosis"]\ntime_origin = "downstaging_start"\n',
    )
    config = load_analysis_config(path)
    assert config.landmarks_months == (12.0, 24.0)
    assert config.suppress_below == 11
    assert config.cox_multivariable == ("complete_necrosis",)
    assert config.time_origin == "downstaging_start"
    assert config.confidence_level == 0.95


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("landmark_months = [12]", "landmark_months: unknown setting"),
        ('time_origin = "dx"', "time_origin: expected one of surgery, downstaging_start"),
        ('cox_univariable = ["bmi"]', "cox_univariable: 'bmi' is not one of"),
        ("confidence_level = 95", "confidence_level: expected a number between 0 and 1"),
        ("suppress_below = 2.5", "suppress_below: expected a whole number >= 0"),
        ("landmarks_months = 12", "landmarks_months: expected a list"),
    ],
)
def test_bad_settings_name_file_table_and_key(tmp_path, line, problem):
    path = write(tmp_path, f"[analysis]\n{line}\n")
    with pytest.raises(ConfigError) as raised:
        load_analysis_config(path)
    assert str(raised.value).startswith(f"{path}: [analysis] ")
    assert problem in str(raised.value)


def test_unreadable_toml_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read study config"):
        load_analysis_config(write(tmp_path, "[analysis\n"))
