"""The shipped mapping files, read with tomllib on their own (not through the loader).

Checks the format documented in mappings/README.md, the check digits of every SNOMED CT and LOINC
code, the order of the text patterns, and the check-digit functions themselves.
"""

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_hcc.checkdigits import loinc_check_digit_valid, verhoeff_valid

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
STATUSES = {"V", "~", "?", "rule"}
TOP_REQUIRED = {"concept", "title", "spec", "read_from", "classes", "codes"}
TOP_OPTIONAL = {"patterns", "units", "unit_notes", "sites", "quantitative"}
CODE_REQUIRED = {"system", "code", "class", "display", "status", "source"}
CODE_OPTIONAL = {"note", "positive_threshold", "unit"}
PATTERN_KEYS = {"class", "regex", "note"}
SYSTEM_REQUIRED = {"name", "canonical", "aliases", "normalise", "check", "status"}
NORMALISERS = {"none", "icd", "icdo3", "upper"}
CHECKS = {"verhoeff", "loinc", ""}
ICDO3_MORPHOLOGY = re.compile(r"[0-9]{4}/[0-9]")
LOINC_ANSWER_PREFIXES = ("LA", "LL", "LP")


def _load(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _systems_of(row: dict[str, Any]) -> list[str]:
    system = row["system"]
    return [system] if isinstance(system, str) else list(system)


def _is_prefix(code: str) -> bool:
    return code.endswith("*")


def _normalised(code: str, normalise: str) -> str:
    # Deliberately independent of the loader: a second reading of the normalisation rules.
    if normalise == "icd":
        return code.replace(".", "").upper()
    if normalise == "upper":
        return code.upper()
    return code


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


concept_file = pytest.mark.parametrize("path", CONCEPT_FILES, ids=lambda path: path.stem)


def test_every_expected_concept_file_is_shipped() -> None:
    assert {path.stem for path in CONCEPT_FILES} == EXPECTED_CONCEPTS


@concept_file
def test_top_level_schema(path: Path) -> None:
    mapping = _load(path)
    assert mapping.keys() >= TOP_REQUIRED, f"{path.name}: missing {TOP_REQUIRED - mapping.keys()}"
    unknown = mapping.keys() - TOP_REQUIRED - TOP_OPTIONAL
    assert not unknown, f"{path.name}: unknown keys {unknown}"
    assert mapping["concept"] == path.stem
    assert mapping["title"].strip() and mapping["spec"].startswith("cohort-rules.md")
    assert mapping["read_from"] and all(isinstance(item, str) for item in mapping["read_from"])
    assert mapping["classes"], f"{path.name}: no classes"
    assert all(
        isinstance(meaning, str) and meaning.strip() for meaning in mapping["classes"].values()
    )


@concept_file
def test_code_rows_schema(path: Path, systems: dict[str, dict[str, Any]]) -> None:
    mapping = _load(path)
    for row in mapping["codes"]:
        where = f"{path.name} code {row.get('code')!r}"
        assert row.keys() >= CODE_REQUIRED, f"{where}: missing {CODE_REQUIRED - row.keys()}"
        assert not row.keys() - CODE_REQUIRED - CODE_OPTIONAL, f"{where}: unknown keys"
        assert row["class"] in mapping["classes"], f"{where}: class {row['class']} not declared"
        assert row["status"] in STATUSES, f"{where}: status {row['status']!r}"
        assert row["display"].strip() and row["source"].strip(), f"{where}: display or source"
        assert "*" not in row["code"].rstrip("*") and row["code"] != "*", f"{where}: bad wildcard"
        for system in _systems_of(row):
            assert system in systems, f"{where}: system {system} is not a canonical in systems.toml"


@concept_file
def test_patterns_compile_and_use_declared_classes(path: Path) -> None:
    mapping = _load(path)
    for pattern in mapping.get("patterns", []):
        assert pattern.keys() == PATTERN_KEYS, f"{path.name}: pattern keys {pattern.keys()}"
        assert pattern["class"] in mapping["classes"]
        re.compile(pattern["regex"])


@concept_file
def test_every_declared_class_is_used(path: Path) -> None:
    mapping = _load(path)
    used = {row["class"] for row in mapping["codes"]}
    used |= {pattern["class"] for pattern in mapping.get("patterns", [])}
    assert set(mapping["classes"]) == used


@concept_file
def test_no_code_in_two_classes(path: Path, systems: dict[str, dict[str, Any]]) -> None:
    class_of: dict[tuple[str, str], str] = {}
    for row in _load(path)["codes"]:
        for system in _systems_of(row):
            normalise = systems.get(system, {}).get("normalise", "none")
            key = (system, _normalised(row["code"], normalise))
            assert class_of.setdefault(key, row["class"]) == row["class"], f"{path.name}: {key}"


def _exact_codes_with_check(
    mappings: dict[str, dict[str, Any]], systems: dict[str, dict[str, Any]], check: str
) -> list[tuple[str, str]]:
    found = []
    for concept, mapping in mappings.items():
        for row in mapping["codes"]:
            checked = [s for s in _systems_of(row) if systems.get(s, {}).get("check") == check]
            if checked and not _is_prefix(row["code"]):
                found.append((concept, row["code"]))
    return found


def test_snomed_codes_are_concept_ids_with_valid_verhoeff_digit(mappings, systems) -> None:
    codes = _exact_codes_with_check(mappings, systems, "verhoeff")
    assert len(codes) > 50
    for concept, code in codes:
        assert code.isdigit() and 6 <= len(code) <= 18, f"{concept}: {code} is not an SCTID"
        assert code[-3:-1] in {"00", "10"}, f"{concept}: {code} has no concept partition id"
        assert verhoeff_valid(code), f"{concept}: {code} fails the Verhoeff check"


def test_loinc_codes_have_valid_check_digit(mappings, systems) -> None:
    codes = _exact_codes_with_check(mappings, systems, "loinc")
    numeric = [(c, code) for c, code in codes if not code.startswith(LOINC_ANSWER_PREFIXES)]
    assert len(numeric) > 25
    for concept, code in numeric:
        assert loinc_check_digit_valid(code), f"{concept}: {code} fails the LOINC mod-10 check"


def test_icdo3_codes_are_morphology_codes(mappings, systems) -> None:
    icdo3 = {canonical for canonical, entry in systems.items() if entry["normalise"] == "icdo3"}
    for concept, mapping in mappings.items():
        for row in mapping["codes"]:
            if icdo3 & set(_systems_of(row)):
                assert ICDO3_MORPHOLOGY.fullmatch(row["code"]), f"{concept}: {row['code']}"


def test_systems_file_schema(systems: dict[str, dict[str, Any]]) -> None:
    all_uris = [
        uri for entry in systems.values() for uri in [entry["canonical"], *entry["aliases"]]
    ]
    assert len(all_uris) == len(set(all_uris)), "a URI is declared twice"
    for canonical, entry in systems.items():
        assert entry.keys() >= SYSTEM_REQUIRED, canonical
        assert entry["normalise"] in NORMALISERS and entry["check"] in CHECKS, canonical
        assert entry["status"] in STATUSES, canonical
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
    for table in ("extensions", "profiles"):
        for name, urls in document[table].items():
            assert urls and all(re.fullmatch(r"https?://\S+", url) for url in urls), name
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
