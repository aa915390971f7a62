"""`fhir_hcc.mapping_lint` and `fhir-hcc lint-mappings`: one failing example per rule.

Each test starts from a small valid base directory (or the shipped mappings with a site layer),
breaks one thing, and checks that exactly that rule fires, naming the file and the code.
"""

from pathlib import Path

import pytest

from fhir_hcc.cli import main
from fhir_hcc.mapping_lint import Finding, lint_directories
from fhir_hcc.mappings import SHIPPED_MAPPINGS

SYSTEMS = """
[[systems]]
name = "SNOMED CT"
canonical = "http://snomed.info/sct"
aliases = []
normalise = "none"
check = "verhoeff"
status = "V"

[[systems]]
name = "LOINC"
canonical = "http://loinc.org"
aliases = []
normalise = "upper"
check = "loinc"
status = "V"

[[systems]]
name = "ICD-10"
canonical = "http://hl7.org/fhir/sid/icd-10"
aliases = ["urn:oid:2.16.840.1.113883.6.3"]
normalise = "icd"
check = ""
status = "V"

[[systems]]
name = "ICD-O-3"
canonical = "http://terminology.hl7.org/CodeSystem/icd-o-3"
aliases = []
normalise = "icdo3"
check = ""
status = "V"
"""
HEADER = """
concept = "{concept}"
title = "Test concept"
spec = "cohort-rules.md 2.1"
read_from = ["Condition.code"]

[classes]
definite = "Definite HCC"
other = "Something else"
"""
ROW = """
[[codes]]
system = "{system}"
code = "{code}"
class = "{cls}"
display = "A display"
status = "V"
source = "A source"
"""
VALID_ROWS = (
    ROW.format(system="http://hl7.org/fhir/sid/icd-10", code="C22.0", cls="definite")
    + ROW.format(system="http://snomed.info/sct", code="109841003", cls="definite")
    + ROW.format(system="http://loinc.org", code="1834-1", cls="other")
    + ROW.format(system="http://terminology.hl7.org/CodeSystem/icd-o-3", code="8170/3", cls="other")
)
PATTERN = """
[[patterns]]
class = "definite"
regex = '''{regex}'''
"""
EXTENSIONS = """
[extensions]
histology = ["{url}"]
"""


def _base(tmp_path: Path, rows: str = VALID_ROWS, extra: str = "", concept: str = "hcc") -> Path:
    directory = tmp_path / "base"
    directory.mkdir(exist_ok=True)
    (directory / "systems.toml").write_text(SYSTEMS)
    (directory / f"{concept}.toml").write_text(HEADER.format(concept=concept) + rows + extra)
    return directory


def _rules(findings: list[Finding]) -> list[tuple[str, str, str]]:
    return [(finding.path.name, finding.subject, finding.rule) for finding in findings]


def test_valid_base_has_no_findings(tmp_path: Path) -> None:
    assert lint_directories([_base(tmp_path, extra=PATTERN.format(regex=r"(?i)\bhcc\b"))]) == []


def test_unreadable_toml(tmp_path: Path) -> None:
    base = _base(tmp_path)
    (base / "broken.toml").write_text("concept = \n")
    assert _rules(lint_directories([base])) == [("broken.toml", "file", "toml")]


def test_missing_top_level_key(tmp_path: Path) -> None:
    base = _base(tmp_path)
    path = base / "hcc.toml"
    path.write_text(path.read_text().replace('spec = "cohort-rules.md 2.1"\n', ""))
    [finding] = lint_directories([base])
    assert (finding.rule, finding.message) == ("schema", "missing spec")


def test_code_row_with_unknown_key_and_undeclared_class(tmp_path: Path) -> None:
    row = ROW.format(system="http://snomed.info/sct", code="95214007", cls="maybe")
    findings = lint_directories([_base(tmp_path, VALID_ROWS + row + 'colour = "red"\n')])
    assert _rules(findings) == [
        ("hcc.toml", "code 95214007", "schema"),
        ("hcc.toml", "code 95214007", "schema"),
    ]
    assert {f.message for f in findings} == {"unknown key colour", "class 'maybe' is not declared"}


def test_declared_class_never_used(tmp_path: Path) -> None:
    rows = ROW.format(system="http://hl7.org/fhir/sid/icd-10", code="C22.0", cls="definite")
    assert _rules(lint_directories([_base(tmp_path, rows)])) == [
        ("hcc.toml", "class other", "schema")
    ]


def test_bad_wildcard(tmp_path: Path) -> None:
    row = ROW.format(system="http://hl7.org/fhir/sid/icd-10", code="C2*2", cls="other")
    assert _rules(lint_directories([_base(tmp_path, VALID_ROWS + row)])) == [
        ("hcc.toml", "code C2*2", "schema")
    ]


def test_unknown_system_and_alias_instead_of_canonical(tmp_path: Path) -> None:
    rows = ROW.format(system="http://example.org/unknown", code="X1", cls="definite")
    rows += ROW.format(system="urn:oid:2.16.840.1.113883.6.3", code="C22.9", cls="other")
    findings = lint_directories([_base(tmp_path, VALID_ROWS + rows)])
    assert _rules(findings) == [
        ("hcc.toml", "code X1", "system"),
        ("hcc.toml", "code C22.9", "system"),
    ]
    assert "http://example.org/unknown is not a canonical URI" in str(findings[0])


def test_code_in_two_classes_after_normalisation(tmp_path: Path) -> None:
    row = ROW.format(system="http://hl7.org/fhir/sid/icd-10", code="c220", cls="other")
    findings = lint_directories([_base(tmp_path, VALID_ROWS + row)])
    assert _rules(findings) == [("hcc.toml", "code c220", "conflict")]
    assert "classes 'definite' and 'other'" in findings[0].message


def test_code_in_two_concepts_read_from_one_field(tmp_path: Path) -> None:
    base = _base(tmp_path)
    rows = ROW.format(system="http://snomed.info/sct", code="109841003", cls="definite")
    rows += ROW.format(system="http://hl7.org/fhir/sid/icd-10", code="Z94.4", cls="other")
    (base / "transplant.toml").write_text(HEADER.format(concept="transplant") + rows)
    findings = lint_directories([base])
    assert _rules(findings) == [("transplant.toml", "code 109841003", "conflict")]
    assert "in concept 'hcc' too; Condition.code reads both" in findings[0].message


def test_site_row_replacing_a_shipped_class_is_not_a_conflict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    row = ROW.format(system="http://hl7.org/fhir/sid/icd-10", code="C22.0", cls="not_hcc")
    (site / "hcc.toml").write_text('concept = "hcc"\n' + row)
    assert lint_directories([SHIPPED_MAPPINGS, site]) == []


@pytest.mark.parametrize(
    ("code", "message"),
    [("109841004", "fails the Verhoeff check digit"), ("1098410", "not a SNOMED CT concept id")],
)
def test_snomed_verhoeff(tmp_path: Path, code: str, message: str) -> None:
    row = ROW.format(system="http://snomed.info/sct", code=code, cls="other")
    [finding] = lint_directories([_base(tmp_path, VALID_ROWS + row)])
    assert (finding.subject, finding.rule, finding.message) == (f"code {code}", "verhoeff", message)


def test_loinc_mod10_but_answer_codes_are_exempt(tmp_path: Path) -> None:
    rows = ROW.format(system="http://loinc.org", code="1834-2", cls="other")
    rows += ROW.format(system="http://loinc.org", code="LA6576-8", cls="other")
    assert _rules(lint_directories([_base(tmp_path, VALID_ROWS + rows)])) == [
        ("hcc.toml", "code 1834-2", "loinc")
    ]


def test_icdo3_morphology_form(tmp_path: Path) -> None:
    row = ROW.format(
        system="http://terminology.hl7.org/CodeSystem/icd-o-3", code="M8170", cls="other"
    )
    assert _rules(lint_directories([_base(tmp_path, VALID_ROWS + row)])) == [
        ("hcc.toml", "code M8170", "icdo3")
    ]


@pytest.mark.parametrize("key", ["display", "source"])
def test_code_without_display_or_source(tmp_path: Path, key: str) -> None:
    row = ROW.format(system="http://snomed.info/sct", code="95214007", cls="definite")
    row = "\n".join(line for line in row.splitlines() if not line.startswith(key))
    assert _rules(lint_directories([_base(tmp_path, VALID_ROWS + row)])) == [
        ("hcc.toml", "code 95214007", key)
    ]


def test_empty_display_is_a_finding_too(tmp_path: Path) -> None:
    row = ROW.format(system="http://snomed.info/sct", code="95214007", cls="definite")
    row = row.replace('display = "A display"', 'display = "  "')
    assert _rules(lint_directories([_base(tmp_path, VALID_ROWS + row)])) == [
        ("hcc.toml", "code 95214007", "display")
    ]


def test_regex_that_does_not_compile(tmp_path: Path) -> None:
    findings = lint_directories([_base(tmp_path, extra=PATTERN.format(regex="(?i)hepat(oma"))])
    assert _rules(findings) == [("hcc.toml", "pattern '(?i)hepat(oma'", "regex")]
    assert "does not compile: missing ), unterminated subpattern" in findings[0].message


def test_extension_url_must_be_absolute(tmp_path: Path) -> None:
    base = _base(tmp_path)
    (base / "extensions.toml").write_text(EXTENSIONS.format(url="mcode-histology"))
    assert _rules(lint_directories([base])) == [("extensions.toml", "extensions.histology", "url")]


def test_site_layer_uses_its_own_system_and_shipped_classes(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "systems.toml").write_text(
        '[[systems]]\nname = "Lab"\ncanonical = "https://lab.example/codes"\naliases = []\n'
        'normalise = "upper"\ncheck = ""\nstatus = "rule"\n'
    )
    row = ROW.format(system="https://lab.example/codes", code="AFP-S", cls="afp_mass")
    (site / "afp.toml").write_text('concept = "afp"\n' + row)
    assert lint_directories([SHIPPED_MAPPINGS, site]) == []
    (site / "afp.toml").write_text('concept = "afp"\n' + row.replace("afp_mass", "afp_grams"))
    assert _rules(lint_directories([SHIPPED_MAPPINGS, site])) == [
        ("afp.toml", "code AFP-S", "schema")
    ]


def test_cli_prints_one_line_per_finding_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    row = ROW.format(system="http://snomed.info/sct", code="109841004", cls="definite")
    (site / "hcc.toml").write_text('concept = "hcc"\n' + row)
    assert main(["lint-mappings", str(site)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert (
        lines[0] == f"{site / 'hcc.toml'}: code 109841004: verhoeff: fails the Verhoeff check digit"
    )
    assert lines[-1].startswith("1 findings in ")


def test_cli_passes_on_the_shipped_mappings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint-mappings"]) == 0
    assert capsys.readouterr().out.startswith("0 findings in ")
