"""The mapping matcher: normalisation, aliases, prefixes, text fallback and site overrides."""

from pathlib import Path

import pytest

from fhir_hcc.errors import ConfigError
from fhir_hcc.fhir.datatypes import CodeableConcept, Coding
from fhir_hcc.mappings import SHIPPED_MAPPINGS, Mappings, load_mappings

ICD10 = "http://hl7.org/fhir/sid/icd-10"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICDO3 = "http://terminology.hl7.org/CodeSystem/icd-o-3"
SNOMED = "http://snomed.info/sct"


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings()


@pytest.mark.parametrize(
    ("system", "code", "cls"),
    [
        (ICD10, "C22.0", "definite"),
        (ICD10, "c220", "definite"),
        (ICD10CM, "C220", "definite"),
        (SNOMED, "109841003", "definite"),
        (ICD10, "C22.2", "not_hcc"),
        (ICD10, "C22.9", "unspecified_primary"),
        (ICDO3, "8170/3", "hcc_morphology"),
        (ICDO3, "M8170/3", "hcc_morphology"),
        (ICDO3, "81703", "hcc_morphology"),
        (ICDO3, "8170-3", "hcc_morphology"),
        (ICDO3, "8180/3", "combined_morphology"),
    ],
)
def test_hcc_codes_normalised(mappings: Mappings, system: str, code: str, cls: str) -> None:
    match = mappings.match_coding("hcc", Coding(system, code))
    assert match is not None and match.cls == cls and match.via == "code"


def test_unknown_code_or_system_does_not_match(mappings: Mappings) -> None:
    assert mappings.match_coding("hcc", Coding(ICD10, "C25.0")) is None
    assert mappings.match_coding("hcc", Coding("http://example.org/local", "C22.0")) is None
    assert mappings.match_coding("hcc", Coding(code="C22.0")) is None


def test_system_aliases(mappings: Mappings) -> None:
    for hcpcs in (
        "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
        "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    ):
        match = mappings.match_coding("y90", Coding(hcpcs, "S2095"))
        assert match is not None and match.cls == "y90"
    atc_de = Coding("http://fhir.de/CodeSystem/bfarm/atc", "L01DB01")
    assert mappings.match_coding("chemotherapy", atc_de).cls == "doxorubicin"  # type: ignore[union-attr]


def test_prefix_rows_and_exact_rows_win(mappings: Mappings) -> None:
    lung = mappings.match_coding("recurrence", Coding(ICD10CM, "C78.01"))
    liver = mappings.match_coding("recurrence", Coding(ICD10CM, "C78.7"))
    assert lung is not None and lung.cls == "secondary_extrahepatic"
    assert liver is not None and liver.cls == "secondary_liver"


def test_text_is_only_a_fallback(mappings: Mappings) -> None:
    coded = CodeableConcept(
        coding=[Coding("http://www.ama-assn.org/go/cpt", "47120")], text="Right hemihepatectomy"
    )
    assert [m.cls for m in mappings.classify("resection", coded)] == ["minor"]
    text_only = CodeableConcept(text="Right hemihepatectomy")
    assert [(m.cls, m.via) for m in mappings.classify("resection", text_only)] == [
        ("major", "text")
    ]


@pytest.mark.parametrize(
    ("text", "cls"),
    [
        ("Non-reactive", "negative"),
        ("NONREACTIVE", "negative"),
        ("REACTIVE", "positive"),
        ("not detected", "negative"),
        ("Positive", "positive"),
    ],
)
def test_negative_result_pattern_is_tried_first(mappings: Mappings, text: str, cls: str) -> None:
    match = mappings.match_text("results", text)
    assert match is not None and match.cls == cls


def test_search_codes_cover_the_cohort_concepts(mappings: Mappings) -> None:
    codes = mappings.search_codes()
    assert (ICD10, "C22.0") in codes["Condition"]
    assert ("http://www.ama-assn.org/go/cpt", "47130") in codes["Procedure"]
    assert ("http://loinc.org", "5196-1") in codes["Observation"]
    assert ("http://www.nlm.nih.gov/research/umls/rxnorm", "3639") in codes[
        "MedicationAdministration"
    ]


def test_site_directory_adds_codes_and_patterns_first(tmp_path: Path) -> None:
    (tmp_path / "hcc.toml").write_text(
        'concept = "hcc"\n'
        '[[codes]]\nsystem = "http://snomed.info/sct"\ncode = "999999999"\nclass = "definite"\n'
        'display = "Local HCC code"\nsource = "site"\n'
        '[[patterns]]\nclass = "definite"\nregex = "(?i)leberzellkarzinom"\n'
    )
    layered = Mappings([SHIPPED_MAPPINGS, tmp_path])
    local = layered.match_coding("hcc", Coding(SNOMED, "999999999"))
    assert local is not None and local.cls == "definite"
    assert layered.match_coding("hcc", Coding(ICD10, "C22.0")) is not None
    assert layered.match_text("hcc", "Hepatozelluläres Leberzellkarzinom") is not None


def test_bad_mapping_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "hcc.toml").write_text(
        '[[codes]]\nsystem = "http://nowhere.example"\ncode = "1"\nclass = "x"\n'
    )
    with pytest.raises(ConfigError, match=r"hcc\.toml: code 1: system http://nowhere.example"):
        Mappings([SHIPPED_MAPPINGS, tmp_path])
    (tmp_path / "hcc.toml").write_text("not toml = = =")
    with pytest.raises(ConfigError, match=r"hcc\.toml: cannot read mapping file"):
        Mappings([SHIPPED_MAPPINGS, tmp_path])
    with pytest.raises(ConfigError, match="mapping directory not found"):
        Mappings([tmp_path / "missing"])


def test_search_codes_hold_every_spelling_a_server_may_store():
    conditions = set(load_mappings().search_codes()["Condition"])
    assert {
        ("http://hl7.org/fhir/sid/icd-10-cm", "C22.0"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "C220"),
        ("http://hl7.org/fhir/sid/icd-9-cm/diagnosis", "1550"),
        ("http://snomed.info/sct", "109841003"),
    } <= conditions


def test_a_site_systems_file_adds_aliases_to_the_search_without_dropping_shipped_ones(tmp_path):
    (tmp_path / "systems.toml").write_text(
        "[[systems]]\n"
        'name = "ICD-9-CM"\n'
        'canonical = "http://hl7.org/fhir/sid/icd-9-cm"\n'
        'aliases = ["urn:oid:2.16.840.1.113883.6.103"]\n'
        'normalise = "icd"\n'
    )
    conditions = set(Mappings([SHIPPED_MAPPINGS, tmp_path]).search_codes()["Condition"])
    assert {
        ("urn:oid:2.16.840.1.113883.6.103", "155.0"),
        ("http://hl7.org/fhir/sid/icd-9-cm/diagnosis", "155.0"),
        ("http://hl7.org/fhir/sid/icd-9-cm", "1550"),
    } <= conditions
