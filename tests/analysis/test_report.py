"""The rendered report: key numbers in HTML and Markdown, valid PNG figures, suppression."""

from __future__ import annotations

import base64
import io
import re

import pytest
from PIL import Image

from fhir_hcc.analysis import AnalysisConfig, analyze
from fhir_hcc.analysis.labels import FIGURES

from .reference import reference_cohort

KEY_NUMBERS = (
    "98.0 (86.4 to 99.7)",  # S(12)
    "64.2 (48.8 to 76.0)",  # S(36)
    "57.3 (41.8 to 70.0)",  # S(60)
    "85.9 (35.5 to NR)",  # median OS
    "75.1",  # median follow-up
    "16.3 (7.6 to 28.0)",  # CIF of recurrence at 12 months
    "0.817 (3)",  # log-rank, treatment groups
    "40 (81.6)",  # male
    "50 (12 to 69)",  # age
    "days / 30.4375",
    "lifelines 0.30.3",
)


def assert_png(data: bytes) -> None:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.verify()
    assert image.size[0] >= 1200 and image.size[1] >= 900


def test_html_is_self_contained_with_the_key_numbers_and_figures(reference_result):
    page = reference_result.to_html()
    for number in KEY_NUMBERS:
        assert number in page
    assert "<script" not in page and 'src="http' not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(FIGURES)
    for data in images:
        assert_png(base64.b64decode(data))
    assert "Patients with HCC" in page  # flow counts


def test_markdown_says_the_same_and_links_the_figures(reference_result):
    text = reference_result.to_markdown("figures")
    for number in KEY_NUMBERS:
        assert number in text
    for name in FIGURES:
        assert f"(figures/{name}.png)" in text


def test_save_figures_writes_valid_pngs(reference_result, tmp_path):
    paths = reference_result.save_figures(tmp_path / "plots")
    assert sorted(path.name for path in paths) == sorted(f"{name}.png" for name in FIGURES)
    for path in paths:
        assert_png(path.read_bytes())


@pytest.fixture(scope="module")
def suppressed():
    return analyze(reference_cohort(), AnalysisConfig(suppress_below=10))


def test_small_cells_are_suppressed_in_json_and_report(suppressed):
    report = suppressed.to_dict()
    assert report["sex"] == {"male": 40, "female": "<10", "other": 0, "unknown": 0}
    assert report["treatment_group"]["y90"] == "<10"
    assert report["recurrence"]["extrahepatic"] == "<10"
    assert report["overall_survival"]["number_at_risk"]["120"] == "<10"
    page = suppressed.to_html()
    assert "9 (18.4)" not in page  # neither the count nor its percentage
    assert "Small-cell suppression" in page


def test_immortal_time_caveat_is_printed_for_another_time_origin():
    cohort = reference_cohort()
    cohort["downstaging_start"] = "1993-09-01"
    result = analyze(cohort, AnalysisConfig(time_origin="downstaging_start"))
    text = result.to_markdown()
    assert "immortal time" in text
    assert "Months since the start of downstaging" not in text  # axis labels live in figures
    assert "Time zero: the start of downstaging" in text
