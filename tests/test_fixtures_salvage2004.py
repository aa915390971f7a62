"""Checks of the salvage2004 FHIR fixture bundles, read as plain JSON (no fhir_hcc code).

The bundles must validate against the fhir.resources R4B models, be exactly what
`fixtures/generate_salvage2004.py` writes, and carry the cohort CSV's facts.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures" / "salvage2004"
GENERATOR = ROOT / "fixtures" / "generate_salvage2004.py"
COHORT_CSV = ROOT / "fixtures" / "reference" / "salvage2004-cohort.csv"
BUNDLE_FILES = sorted(path.name for path in FIXTURES.glob("*.json"))

CUTOFF = "2003-12-31"
STUDY_START = date(1993, 9, 1)
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
CPT = "http://www.ama-assn.org/go/cpt"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"

HCC = (ICD10, "C22.0")
RESECTION_CPT = {"47120", "47122", "47125", "47130"}
COUINAUD_SEGMENTS = {
    "71133005",
    "277956007",
    "277957003",
    "277958008",
    "277959000",
    "277960005",
    "277961009",
    "277962002",
}
Y90 = {(CPT, "79445"), (SNOMED, "1217123003")}
DOXORUBICIN = {(RXNORM, "3639"), (RXNORM, "1790099"), (ATC, "L01DB01")}
PIAF_PARTNERS = {  # cisplatin, interferon alfa-2b, fluorouracil
    (RXNORM, "2555"),
    (ATC, "L01XA01"),
    (RXNORM, "5880"),
    (ATC, "L03AB05"),
    (RXNORM, "4492"),
    (ATC, "L01BC02"),
}
HBSAG_POSITIVE = {(LOINC, "LA6576-8"), (SNOMED, "10828004")}
HBSAG_NEGATIVE = {(LOINC, "LA6577-6"), (SNOMED, "260385009")}
WORSENED = (SNOMED, "271299001")
DATE_VALUE = re.compile(r"\d{4}-\d{2}-\d{2}(T.*)?")

Json = dict[str, Any]
Cohort = dict[str, dict[str, str]]  # CSV rows by patient id


# ---------------------------------------------------------------------------------------------
# Reading helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundles() -> dict[str, Json]:
    return {
        name.removesuffix(".json"): orjson.loads((FIXTURES / name).read_bytes())
        for name in BUNDLE_FILES
    }


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    with COHORT_CSV.open(newline="", encoding="utf-8") as handle:
        return {row["id"]: row for row in csv.DictReader(handle)}


def resources(bundle: Json, resource_type: str | None = None) -> list[Json]:
    found = [entry["resource"] for entry in bundle["entry"]]
    return [r for r in found if resource_type in (None, r["resourceType"])]


def codes(concept: Json | None) -> set[tuple[str, str]]:
    return {(c.get("system", ""), c.get("code", "")) for c in (concept or {}).get("coding", [])}


def local_day(value: str) -> date:
    """The calendar date as written (the local date counts, whatever the offset)."""
    return date.fromisoformat(value[:10])


def when(resource: Json) -> date:
    """The clinically relevant date of a resource, whichever [x] form it uses."""
    for name in ("effective", "performed", "onset"):
        if f"{name}DateTime" in resource:
            return local_day(resource[f"{name}DateTime"])
        if f"{name}Period" in resource:
            return local_day(resource[f"{name}Period"]["start"])
    raise AssertionError(f"{resource['resourceType']}/{resource['id']}: no date")


def patient(bundle: Json) -> Json:
    (found,) = resources(bundle, "Patient")
    return found


def walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair inside nested dicts and lists."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def cohort_row_day(row: dict[str, str], column: str) -> date:
    return date.fromisoformat(row[column])


def drug_codes(administration: Json, bundle: Json) -> set[tuple[str, str]]:
    """Codes of the drug given, through a CodeableConcept, a contained or a bundled Medication."""
    if "medicationCodeableConcept" in administration:
        return codes(administration["medicationCodeableConcept"])
    reference = administration["medicationReference"]["reference"]
    if reference.startswith("#"):
        candidates = administration["contained"]
        return next(codes(m["code"]) for m in candidates if m["id"] == reference[1:])
    by_url = {entry["fullUrl"]: entry["resource"] for entry in bundle["entry"]}
    by_url |= {entry["request"]["url"]: entry["resource"] for entry in bundle["entry"]}
    return codes(by_url[reference]["code"])


# ---------------------------------------------------------------------------------------------
# Structure: R4B validity, transaction form, references, determinism
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUNDLE_FILES)
def test_every_resource_validates_against_r4b(name: str) -> None:
    bundle = orjson.loads((FIXTURES / name).read_bytes())
    for resource in resources(bundle):
        model = get_fhir_model_class(resource["resourceType"])
        try:
            model.model_validate(resource)
        except ValueError as exc:
            pytest.fail(f"{name}: {resource['resourceType']}/{resource['id']}: {exc}")


def test_bundles_are_transactions_of_puts_with_client_ids(bundles: dict[str, Json]) -> None:
    assert len(bundles) == 57
    seen: set[str] = set()
    for name, bundle in bundles.items():
        assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "transaction"), name
        for entry in bundle["entry"]:
            resource = entry["resource"]
            url = f"{resource['resourceType']}/{resource['id']}"
            assert entry["request"] == {"method": "PUT", "url": url}, name
            full_url = entry["fullUrl"]
            assert full_url.startswith("urn:uuid:") or full_url.endswith(f"/{url}"), name
            assert url not in seen, f"{name}: {url} also in another bundle"
            seen.add(url)


def test_references_resolve_inside_their_bundle(bundles: dict[str, Json]) -> None:
    urn_bundles = set()
    for name, bundle in bundles.items():
        full_urls = {entry["fullUrl"] for entry in bundle["entry"]}
        uses_urn = all(url.startswith("urn:uuid:") for url in full_urls)
        targets = full_urls if uses_urn else {entry["request"]["url"] for entry in bundle["entry"]}
        if uses_urn:
            urn_bundles.add(name)
        for resource in resources(bundle):
            contained = {f"#{c['id']}" for c in resource.get("contained", [])}
            for key, value in walk(resource):
                if key == "reference":
                    assert value in targets | contained, f"{name}: {resource['id']}: {value}"
    assert 0 < len(urn_bundles) < len(bundles) // 2, urn_bundles


def _generate(out: Path, hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    command = [sys.executable, str(GENERATOR), "--out", str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_generator_is_deterministic_and_committed_files_are_current(tmp_path: Path) -> None:
    for hash_seed in ("0", "4242"):  # different set/dict hashing must not change a byte
        out = tmp_path / hash_seed
        _generate(out, hash_seed)
        assert sorted(path.name for path in out.iterdir()) == BUNDLE_FILES
        stale = [n for n in BUNDLE_FILES if (out / n).read_bytes() != (FIXTURES / n).read_bytes()]
        assert not stale, f"regenerate the fixtures; differing: {stale}"


def test_generator_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    bad_csv = tmp_path / "cohort.csv"
    text = COHORT_CSV.read_text(encoding="utf-8").replace("2002-01-21", "2002-13-21", 1)
    bad_csv.write_text(text, encoding="utf-8")
    command = [sys.executable, str(GENERATOR), "--csv", str(bad_csv), "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "row 2 (P01): field surgery_date" in result.stderr
    assert not list(tmp_path.glob("*.json"))


VERHOEFF_D = (
    "0123456789",
    "1234067895",
    "2340178956",
    "3401289567",
    "4012395678",
    "5987604321",
    "6598710432",
    "7659821043",
    "8765932104",
    "9876543210",
)
VERHOEFF_P = (
    "0123456789",
    "1576283094",
    "5803796142",
    "8916043527",
    "9453126870",
    "4286573901",
    "2793806415",
    "7046913258",
)


def snomed_id_valid(sctid: str) -> bool:
    """Verhoeff check digit over the whole SNOMED CT identifier."""
    check = 0
    for position, digit in enumerate(reversed(sctid)):
        check = int(VERHOEFF_D[check][int(VERHOEFF_P[position % 8][int(digit)])])
    return check == 0


def loinc_code_valid(code: str) -> bool:
    """LOINC mod-10 check digit (cohort-rules.md, appendix B)."""
    body, check = code.split("-")
    from_right = body[::-1]
    doubled = int(from_right[0::2][::-1]) * 2
    total = sum(int(d) for d in f"{doubled}{from_right[1::2][::-1]}")
    return (10 - total % 10) % 10 == int(check)


def test_every_snomed_and_loinc_code_passes_its_check_digit(bundles: dict[str, Json]) -> None:
    assert not snomed_id_valid("109841004") and not loinc_code_valid("1834-2")  # checks can fail
    for name, bundle in bundles.items():
        for key, coding in walk(bundle):
            if key != "coding":
                continue
            for c in coding:
                if c["system"] == SNOMED:
                    assert c["code"].isdigit() and snomed_id_valid(c["code"]), (name, c)
                elif c["system"] == LOINC and not c["code"].startswith("LA"):
                    assert loinc_code_valid(c["code"]), (name, c)


# ---------------------------------------------------------------------------------------------
# Facts of the recipe, checked against the CSV
# ---------------------------------------------------------------------------------------------


def test_cohort_patients_match_the_csv(bundles: dict[str, Json], cohort: Cohort) -> None:
    assert {n for n in bundles if n.startswith("P")} == set(cohort)
    assert {n for n in bundles if not n.startswith("P")} == {f"N0{i}" for i in range(1, 9)}
    for pid, row in cohort.items():
        person = patient(bundles[pid])
        assert person["id"] == pid
        assert person["gender"] == {"M": "male", "F": "female"}[row["sex"]], pid
        birth, surgery = (
            date.fromisoformat(person["birthDate"]),
            cohort_row_day(row, "surgery_date"),
        )
        age = surgery.year - birth.year - ((surgery.month, surgery.day) < (birth.month, birth.day))
        assert age == int(row["age"]), pid


def test_deceased_date_is_the_csv_end_date(bundles: dict[str, Json], cohort: Cohort) -> None:
    deaths = {pid: patient(bundles[pid]).get("deceasedDateTime") for pid in cohort}
    expected = {pid: row["end_date"] if row["died"] == "1" else None for pid, row in cohort.items()}
    assert deaths == expected
    assert sum(value is not None for value in deaths.values()) == 22


def test_every_date_lies_between_birth_and_death_or_cutoff(bundles: dict[str, Json]) -> None:
    for name, bundle in bundles.items():
        person = patient(bundle)
        death = person.get("deceasedDateTime")
        last = min(filter(None, (death, CUTOFF)))
        for resource in resources(bundle):
            for _, value in walk(resource):
                if isinstance(value, str) and DATE_VALUE.fullmatch(value):
                    day = value[:10]
                    assert person["birthDate"] <= day <= last, f"{name}: {resource['id']}: {value}"


def test_one_resection_on_the_surgery_date_with_matching_segments(
    bundles: dict[str, Json], cohort: Cohort
) -> None:
    for pid, row in cohort.items():
        resections = [
            p
            for p in resources(bundles[pid], "Procedure")
            if {code for system, code in codes(p["code"]) if system == CPT} & RESECTION_CPT
        ]
        assert len(resections) == 1, pid
        (resection,) = resections
        assert resection["status"] == "completed", pid
        assert when(resection) == cohort_row_day(row, "surgery_date"), pid
        segments = {code for site in resection["bodySite"] for _, code in codes(site)}
        assert segments <= COUINAUD_SEGMENTS, pid
        minor = (CPT, "47120") in codes(resection["code"])
        if row["resection"] == "MAJOR":
            assert len(segments) >= 3 and not minor, pid
        else:
            assert 1 <= len(segments) <= 2 and minor, pid


def test_downstaging_matches_group_and_window(bundles: dict[str, Json], cohort: Cohort) -> None:
    for pid, row in cohort.items():
        bundle = bundles[pid]
        surgery = cohort_row_day(row, "surgery_date")
        onset = min(when(c) for c in resources(bundle, "Condition") if HCC in codes(c["code"]))
        given = [
            (when(m), drug_codes(m, bundle)) for m in resources(bundle, "MedicationAdministration")
        ]
        y90 = [when(p) for p in resources(bundle, "Procedure") if codes(p["code"]) & Y90]
        treatment_days = [day for day, _ in given] + y90
        assert min(treatment_days) >= max(STUDY_START, onset - timedelta(days=30)), pid
        assert max(treatment_days) <= surgery - timedelta(days=21), pid
        drugs = set().union(*(drug for _, drug in given))
        assert bool(y90) == (row["group"] in {"Y90", "SEQ"}), pid
        assert bool(drugs & DOXORUBICIN) == (row["group"] != "Y90"), pid
        assert bool(drugs & PIAF_PARTNERS) == (row["group"] in {"COMBO", "SEQ"}), pid


def test_hbsag_and_necrosis_match_the_csv(bundles: dict[str, Json], cohort: Cohort) -> None:
    for pid, row in cohort.items():
        observations = resources(bundles[pid], "Observation")
        (hbsag,) = [o for o in observations if (LOINC, "5196-1") in codes(o["code"])]
        expected = HBSAG_POSITIVE if row["hbsag_pos"] == "1" else HBSAG_NEGATIVE
        assert codes(hbsag["valueCodeableConcept"]) <= expected, pid
        (necrosis,) = [o for o in observations if (SNOMED, "405921002") in codes(o["code"])]
        percent = necrosis["valueQuantity"]["value"]
        assert (percent == 100) == (row["complete_necrosis"] == "1"), pid
        report_delay = (when(necrosis) - cohort_row_day(row, "surgery_date")).days
        assert 0 <= report_delay <= 5, pid


def test_recurrence_date_and_site_match_the_csv(bundles: dict[str, Json], cohort: Cohort) -> None:
    for pid, row in cohort.items():
        bundle = bundles[pid]
        worsened = sorted(
            when(o)
            for o in resources(bundle, "Observation")
            if (LOINC, "97509-4") in codes(o["code"])
            and WORSENED in codes(o["valueCodeableConcept"])
        )
        if not row["recurrence_date"]:
            assert not worsened, pid
            continue
        recurrence = cohort_row_day(row, "recurrence_date")
        assert worsened[0] == recurrence, pid
        site_code = (ICD10CM, "C78.00") if row["rec_site"] == "EXTRAHEPATIC" else HCC
        new_conditions = [
            c
            for c in resources(bundle, "Condition")
            if site_code in codes(c["code"]) and when(c) == recurrence
        ]
        assert len(new_conditions) == 1, pid


def test_survivors_have_a_visit_and_assessment_on_the_cutoff(
    bundles: dict[str, Json], cohort: Cohort
) -> None:
    cutoff = date.fromisoformat(CUTOFF)
    for pid in (pid for pid, row in cohort.items() if row["died"] == "0"):
        bundle = bundles[pid]
        visits = [
            e for e in resources(bundle, "Encounter") if local_day(e["period"]["start"]) == cutoff
        ]
        statuses = [
            o
            for o in resources(bundle, "Observation")
            if (LOINC, "97509-4") in codes(o["code"]) and when(o) == cutoff
        ]
        assert len(visits) == 1 and len(statuses) == 1, pid
