"""The rendered report: key numbers in HTML and Markdown, valid PNG figures, suppression."""

from __future__ import annotations

import base64
import csv
import io
import re

import pytest
from PIL import Image

from fhir_hcc.analysis import AnalysisConfig, analyze
from fhir_hcc.analysis.blocks import Table
from fhir_hcc.analysis.labels import FIGURES
from fhir_hcc.analysis.report import build_document

from .reference import reference_cohort

KEY_NUMBERS = (
    "98.0 (86.4 to 99.7)",  # S(12)
    "64.2 (48.8 to 76.0)",  # S(36)
    "57.3 (41.8 to 70.0)",  # S(60)
    "85.9 (35.5 to NR)",  # median OS
    "75.1",  # median follow-up
    "16.3 (7.6 to 28.0)",  # CIF of recurrence at 12 months
    "0.817 (3)",  # log-rank, treatment groups
    "40 (81.6)",  # male, overall
    "50 (44 to 57)",  # age, median (IQR)
    "12 to 69",  # age range
    "0.721 (3)",  # Gray's test, treatment groups
    "1.96 (0.79 to 4.90)",  # Fine-Gray, major resection
    "0.08 (0.01 to 0.54)",  # Fine-Gray, complete necrosis
    "days / 30.4375",
    "lifelines 0.30.3",
)


def assert_png(data: bytes) -> None:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.verify()
    assert image.size[0] >= 1800 and image.size[1] >= 400  # 300 dpi, 6 inches wide or more


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


def test_save_figures_writes_png_svg_and_pdf(reference_result, tmp_path):
    paths = reference_result.save_figures(tmp_path / "plots")
    expected = {f"{name}.{fmt}" for name in FIGURES for fmt in ("png", "svg", "pdf")}
    assert {path.name for path in paths} == expected
    for path in paths:
        data = path.read_bytes()
        if path.suffix == ".png":
            assert_png(data)
            assert Image.open(io.BytesIO(data)).info["dpi"] == pytest.approx((300, 300), abs=0.1)
        elif path.suffix == ".svg":
            assert data.lstrip().startswith(b"<?xml") and b"<svg" in data
        else:
            assert data.startswith(b"%PDF-")


def test_tables_are_numbered_in_order_and_saved_as_csv(reference_result, tmp_path):
    text = reference_result.to_markdown()
    numbers = [int(n) for n in re.findall(r"\*\*Table (\d+)\.", text)]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 10
    figures = [int(n) for n in re.findall(r"\*Figure (\d+)\.", text)]
    assert figures == list(range(1, len(FIGURES) + 1))
    paths = reference_result.save_tables(tmp_path / "tables")
    assert [p.name.split("_")[0] for p in paths] == [f"table{n}" for n in numbers]
    with paths[1].open(newline="") as handle:  # Table 2: baseline characteristics
        rows = list(csv.reader(handle))
    assert rows[0][:2] == ["Characteristic", "Overall (n = 49)"] and rows[0][-2:] == ["p", "SMD"]
    assert ["Male", "40 (81.6)", "25 (78.1)", "7 (87.5)", "3 (75.0)", "5 (100.0)", "", ""] in rows


def test_docx_holds_every_table_and_figure(reference_result, tmp_path):
    import docx

    path = tmp_path / "report.docx"
    path.write_bytes(reference_result.to_docx())
    document = docx.Document(str(path))
    tables = [b for b in build_document(reference_result) if isinstance(b, Table)]
    assert len(document.tables) == len(tables)
    for table, grid in zip(tables, document.tables, strict=True):
        assert tuple(cell.text for cell in grid.rows[0].cells) == table.header
        assert len(grid.rows) == len(table.rows) + 1
    captions = [p.text for p in document.paragraphs if p.style.name == "Caption"]
    assert [t.caption for t in tables] == [c for c in captions if c.startswith("Table")]
    assert len(document.inline_shapes) == len(FIGURES)
    assert "Survival and recurrence after salvage surgery" in document.paragraphs[0].text


def test_provenance_header_names_source_window_versions_and_hashes():
    provenance = {
        "source": "https://fhir.example.org/r4",
        "source_kind": "FHIR server",
        "transaction_time": "2026-11-30T02:00:00.000+00:00",
        "pulled_from": "https://fhir.example.org/r4",
        "study_start": "1993-09-01",
        "study_end": "2002-06-30",
        "window_applies_to": "downstaging_start",
        "cutoff": "2003-12-31",
        "censoring": "last_contact",
        "fhir_hcc_version": "0.1.0",
        "mapping_directories": ["shipped", "site-maps"],
        "mappings_sha256": "ab" * 32,
        "config_path": "study.toml",
        "config_sha256": "cd" * 32,
    }
    result = analyze(reference_cohort(), flow={"steps": [], "provenance": provenance})
    text = result.to_markdown()
    assert "transaction time 2026-11-30T02:00:00.000+00:00" in text
    assert "Study window 1993-09-01 to 2002-06-30 (by downstaging start)" in text
    assert "data cut-off 2003-12-31" in text
    assert "mapping files shipped, site-maps (SHA-256 abababababababab...)" in text
    assert "Study configuration study.toml (SHA-256 cdcdcdcdcdcdcdcd...)" in text
    assert f"Report run {result.run_date} with fhir-hcc" in text
    assert result.to_dict()["provenance"] == provenance
    assert "Data source: not recorded" in analyze(reference_cohort()).to_markdown()


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
