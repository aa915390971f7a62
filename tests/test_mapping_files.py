"""The shipped mapping files: the lint rules of `fhir_hcc.mapping_lint`, and their content.

The generic checks (format of mappings/README.md, known systems, conflicts, SNOMED CT and LOINC
check digits, display and source on every code, patterns that compile) run through the same lint
as `fhir-hcc lint-mappings`; the tests below it check what these particular files must say, the
order of the text patterns, and the check-digit functions themselves.
"""

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_hcc.checkdigits import loinc_check_digit_valid, verhoeff_valid
from fhir_hcc.mapping_lint import lint_directories

MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"
SHARED_FILES = {"systems.toml", "extensions.toml"}
CONCEPT_FILES = sorted(p for p in MAPPINGS.glob("*.toml") if p.name not in SHARED_FILES)

EXPECTED_CONCEPTS = {
    "afp",
    "chemotherapy",
    "death",
    "hcc",
    "hepatitis_b",
    "hepatitis_c",
    "liver_segments",
    "pathology",
    "recurrence",
    "resection",
    "results",
    "routes",
    "transplant",
    "y90",
}


def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _is_prefix(code: str) -> bool:
    return code.endswith("*")


def _first_match(mapping: dict[str, Any], text: str) -> str | None:
    for pattern in mapping["patterns"]:
        if re.search(pattern["regex"], text):
            return pattern["class"]
    return None


@pytest.fixture(scope="module")
def systems() -> dict[str, dict[str, Any]]:
    return {entry["canonical"]: entry for entry in _load(MAPPINGS / "systems.toml")["systems"]}


@pytest.fixture(scope="module")
def mappings() -> dict[str, dict[str, Any]]:
    return {path.stem: _load(path) for path in CONCEPT_FILES}


def test_every_expected_concept_file_is_shipped() -> None:
    assert {path.stem for path in CONCEPT_FILES} == EXPECTED_CONCEPTS


def test_shipped_files_pass_every_lint_rule() -> None:
    findings = [str(finding) for finding in lint_directories([MAPPINGS])]
    assert findings == []


@pytest.mark.parametrize(("check", "at_least"), [("verhoeff", 50), ("loinc", 25)])
def test_check_digits_cover_many_codes(
    mappings: dict[str, dict[str, Any]],
    systems: dict[str, dict[str, Any]],
    check: str,
    at_least: int,
) -> None:
    # The lint checks every such code; this guards against the checks silently covering none.
    checked = {uri for uri, entry in systems.items() if entry["check"] == check}
    codes = [
        row["code"]
        for mapping in mappings.values()
        for row in mapping["codes"]
        if checked & set([row["system"]] if isinstance(row["system"], str) else row["system"])
        and not _is_prefix(row["code"])
        and row["code"][:1].isdigit()
    ]
    assert len(codes) > at_least


def test_systems_have_the_expected_check_digit_rules(systems: dict[str, dict[str, Any]]) -> None:
    assert systems["http://snomed.info/sct"]["check"] == "verhoeff"
    assert systems["http://loinc.org"]["check"] == "loinc"


def test_extensions_file_lists_exact_urls() -> None:
    document = _load(MAPPINGS / "extensions.toml")
    assert {
        "histology_morphology_behavior",
        "disease_status_evidence_type",
        "related_primary_cancer_condition",
        "radiotherapy_modality_and_technique",
        "us_core_birthsex",
    } <= document["extensions"].keys()
    assert len(document["extensions"]["disease_status_evidence_type"]) == 2


def test_afp_unit_factors(mappings: dict[str, dict[str, Any]]) -> None:
    afp = mappings["afp"]
    assert afp["units"]["ng/mL"] == 1.0
    assert all(isinstance(f, float) and f > 0 for f in afp["units"].values())
    assert afp["unit_notes"].keys() <= afp["units"].keys()


def test_hbsag_quantitative_threshold_agrees_with_its_row(
    mappings: dict[str, dict[str, Any]],
) -> None:
    hepatitis_b = mappings["hepatitis_b"]
    rows = [row for row in hepatitis_b["codes"] if "positive_threshold" in row]
    assert [(r["code"], r["positive_threshold"], r["unit"]) for r in rows] == [
        ("58452-4", 0.05, "[IU]/mL")
    ]
    table = hepatitis_b["quantitative"]
    assert (table["positive_threshold"], table["unit"]) == (0.05, "[IU]/mL")


def test_recurrence_sites_refine_secondary_codes(mappings: dict[str, dict[str, Any]]) -> None:
    recurrence = mappings["recurrence"]
    prefixes = [
        row["code"].rstrip("*")
        for row in recurrence["codes"]
        if row["class"] == "secondary_extrahepatic" and _is_prefix(row["code"])
    ]
    for site_prefix in recurrence["sites"]:
        assert any(site_prefix.startswith(prefix) for prefix in prefixes), site_prefix


@pytest.mark.parametrize(
    ("concept", "text", "expected"),
    [
        ("results", "Non-reactive", "negative"),
        ("results", "NOT DETECTED", "negative"),
        ("results", "Reactive", "positive"),
        ("results", "HBsAg+ve", "positive"),
        ("results", "pending", None),
        ("resection", "Left hepatic lobectomy", "ambiguous"),
        ("resection", "left lobectomy", "ambiguous"),
        ("resection", "Extended left lobectomy", "major"),
        ("resection", "Left lateral segmentectomy", "minor"),
        ("resection", "Right hemihepatectomy", "major"),
        ("resection", "Trisegmentectomy", "major"),
        ("resection", "Non-anatomical wedge resection", "minor"),
        ("resection", "Exploratory laparotomy", None),
        ("y90", "Tc-99m MAA mapping angiogram before Y-90", "workup"),
        ("y90", "TheraSphere radioembolization", "y90"),
        ("chemotherapy", "PegIntron", "hbv_interferon"),
        ("chemotherapy", "Intron A 5 MU/m2", "interferon_alfa"),
        ("chemotherapy", "5-FU 400 mg/m2", "fluorouracil"),
        ("chemotherapy", "Adriamycin", "doxorubicin"),
        ("chemotherapy", "Cis-platinum", "cisplatin"),
        ("pathology", "No residual viable tumour", "complete_necrosis"),
        ("pathology", "ypT0", "complete_necrosis"),
        ("pathology", "50% necrosis", None),
    ],
)
def test_pattern_order_classifies_text(
    mappings: dict[str, dict[str, Any]], concept: str, text: str, expected: str | None
) -> None:
    assert _first_match(mappings[concept], text) == expected


# --- check-digit functions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["109841003", "66071002", "277960005", "1156383000", "13580001000004101", "2363"]
)
def test_verhoeff_accepts_valid_codes(code: str) -> None:
    assert verhoeff_valid(code)


@pytest.mark.parametrize("code", ["109841004", "109840103", "", "10984100a", "١٠٩٨٤١٠٠٣"])
def test_verhoeff_rejects_invalid_codes(code: str) -> None:
    assert not verhoeff_valid(code)


@pytest.mark.parametrize("code", ["1834-1", "5196-1", "97509-4", "10674-0", "58452-4"])
def test_loinc_accepts_valid_codes(code: str) -> None:
    assert loinc_check_digit_valid(code)


@pytest.mark.parametrize("code", ["1834-2", "5196-2", "LA6576-8", "1834", "1834-12", "", "18a4-1"])
def test_loinc_rejects_invalid_codes(code: str) -> None:
    assert not loinc_check_digit_valid(code)


def _only_valid_check_digit(body: str, valid: Any, separator: str = "") -> str:
    candidates = [d for d in "0123456789" if valid(f"{body}{separator}{d}")]
    assert len(candidates) == 1, (body, candidates)
    return candidates[0]


@given(st.text(alphabet="0123456789", min_size=5, max_size=17), st.data())
def test_verhoeff_detects_single_substitutions_and_adjacent_swaps(
    body: str, data: st.DataObject
) -> None:
    code = body + _only_valid_check_digit(body, verhoeff_valid)
    position = data.draw(st.integers(0, len(code) - 1))
    replacement = data.draw(st.sampled_from([d for d in "0123456789" if d != code[position]]))
    assert not verhoeff_valid(code[:position] + replacement + code[position + 1 :])
    swap = data.draw(st.integers(0, len(code) - 2))
    if code[swap] != code[swap + 1]:
        swapped = code[:swap] + code[swap + 1] + code[swap] + code[swap + 2 :]
        assert not verhoeff_valid(swapped)


@given(st.text(alphabet="0123456789", min_size=1, max_size=7), st.data())
def test_loinc_detects_single_substitutions(body: str, data: st.DataObject) -> None:
    check = _only_valid_check_digit(body, loinc_check_digit_valid, "-")
    position = data.draw(st.integers(0, len(body) - 1))
    replacement = data.draw(st.sampled_from([d for d in "0123456789" if d != body[position]]))
    assert not loinc_check_digit_valid(
        f"{body[:position]}{replacement}{body[position + 1 :]}-{check}"
    )
