"""The codes report (`fhir_hcc.codes_report`, `fhir-hcc codes`) on the reference fixtures and on a
small export with local codes."""

import csv
import importlib.util
import io
import json
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_hcc.cli import main
from fhir_hcc.codes_report import CodeRow, collect_codes, write_codes_csv
from fhir_hcc.mappings import load_mappings
from fhir_hcc.sources import FileSource, InputProblem

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "fixtures" / "salvage2004"
LAB = "https://lab.hospital.example/codes"
LOINC = "http://loinc.org"
SITE_SYSTEMS = f"""
[[systems]]
name = "Hospital laboratory"
canonical = "{LAB}"
aliases = []
normalise = "upper"
check = ""
status = "rule"
"""
SITE_AFP = f"""
concept = "afp"
[[codes]]
system = "{LAB}"
code = "AFP-S"
class = "afp_mass"
display = "AFP serum (local)"
status = "rule"
source = "site laboratory catalogue"
"""


def _builders() -> Any:
    spec = importlib.util.spec_from_file_location(
        "fhir_builders", ROOT / "fixtures/fhir_builders.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _problems() -> list[InputProblem]:
    return []


@pytest.fixture(scope="module")
def reference_rows() -> list[CodeRow]:
    problems: list[InputProblem] = []
    rows = collect_codes(REFERENCE, load_mappings(), problems.append)
    assert problems == []
    return rows


def test_reference_fixtures_map_every_code_but_the_routine_noise(
    reference_rows: list[CodeRow],
) -> None:
    builders = _builders()
    concepts = [t.code for t in (*builders.VITALS, *builders.LABS)]
    concepts += builders.COMORBIDITIES.values()
    noise = {(coding["system"], coding["code"]) for c in concepts for coding in c["coding"]}
    groups = Counter(row.group for row in reference_rows)
    assert groups["unmapped-local"] == groups["text-only"] == 0
    unmapped = {(r.system, r.code) for r in reference_rows if r.group == "unmapped-standard"}
    assert unmapped and unmapped <= noise  # hypertension, labs, vitals: the cohort needs none
    # Everything else in the fields the cohort uses maps by code.
    relevant = [r for r in reference_rows if r.relevant and (r.system, r.code) not in noise]
    assert relevant and all(r.mapped_by == "code" for r in relevant)


def test_reference_counts_and_order(reference_rows: list[CodeRow]) -> None:
    conditions = Counter()
    for item, _ in FileSource(REFERENCE).read(_problems().append):
        resource = orjson.loads(item)
        if resource["resourceType"] == "Condition":
            conditions.update((c["system"], c["code"]) for c in resource["code"]["coding"])
    [hcc] = [r for r in reference_rows if r.field == "code" and r.code == "C22.0"]
    assert (hcc.resource_type, hcc.count, hcc.mapped_to) == (
        "Condition",
        conditions["http://hl7.org/fhir/sid/icd-10", "C22.0"],
        ("hcc.definite",),
    )
    ranks = [("unmapped-local", "unmapped-standard", "text-only", "other-field", "mapped").index(
        r.group) for r in reference_rows]  # fmt: skip
    assert ranks == sorted(ranks)
    standard = [r.count for r in reference_rows if r.group == "unmapped-standard"]
    assert standard == sorted(standard, reverse=True)


def _observation(number: int, system: str, code: str, display: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o{number}",
        "status": "final",
        "code": {"coding": [{"system": system, "code": code, "display": display}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2001-01-01",
        "valueQuantity": {"value": 12, "unit": "ng/mL"},
    }


@pytest.fixture
def local_export(tmp_path: Path) -> Path:
    """Many routine haemoglobins, two local AFP codes, a local resection code with a known name,
    a contained Medication with a local drug code, and one broken line."""
    resources = [_observation(n, LOINC, "718-7", "Hemoglobin") for n in range(6)]
    resources += [_observation(10 + n, LAB, "AFP-S", "AFP serum") for n in range(2)]
    resources.append(
        {
            "resourceType": "Procedure",
            "id": "r1",
            "status": "completed",
            "code": {
                "coding": [{"system": LAB, "code": "OP-77", "display": "Right hemihepatectomy"}]
            },
            "subject": {"reference": "Patient/p1"},
        }
    )
    resources.append(
        {
            "resourceType": "MedicationAdministration",
            "id": "m1",
            "status": "completed",
            "contained": [
                {
                    "resourceType": "Medication",
                    "id": "drug",
                    "code": {"coding": [{"system": LAB, "code": "PHARM-12", "display": "Doxo"}]},
                }
            ],
            "medicationReference": {"reference": "#drug"},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2001-01-01",
        }
    )
    lines = [json.dumps(resource) for resource in resources] + ['{"resourceType": "Obs']
    path = tmp_path / "export.ndjson"
    path.write_text("\n".join(lines) + "\n")
    return path


def _site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    (site / "systems.toml").write_text(SITE_SYSTEMS)
    (site / "afp.toml").write_text(SITE_AFP)
    return site


def test_local_codes_come_first_and_a_site_file_maps_them(
    local_export: Path, tmp_path: Path
) -> None:
    problems: list[InputProblem] = []
    rows = collect_codes(local_export, load_mappings(), problems.append)
    [problem] = problems
    assert str(problem).startswith(f"{local_export}:11: malformed JSON")
    listed = [(r.group, r.resource_type, r.field, r.code, r.count, r.mapped_to) for r in rows]
    assert listed == [
        ("unmapped-local", "Observation", "code", "AFP-S", 2, ()),
        ("unmapped-local", "Medication", "code", "PHARM-12", 1, ()),
        ("unmapped-standard", "Observation", "code", "718-7", 6, ()),
        ("text-only", "Procedure", "code", "OP-77", 1, ("resection.major",)),
    ]
    with_site = collect_codes(local_export, load_mappings([_site(tmp_path)]), problems.append)
    [afp] = [r for r in with_site if r.code == "AFP-S"]
    assert (afp.group, afp.mapped_to, afp.mapped_by) == ("mapped", ("afp.afp_mass",), "code")


def test_text_only_concept_is_listed_without_code(tmp_path: Path) -> None:
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "code": {"text": "Hepatoma, local term"},
        "subject": {"reference": "Patient/p1"},
    }
    (tmp_path / "c.json").write_text(json.dumps(condition))
    [row] = collect_codes(tmp_path, load_mappings(), _problems().append)
    assert (row.system, row.code, row.display, row.group) == (
        "",
        "",
        "Hepatoma, local term",
        "unmapped-local",
    )


def test_csv_output(local_export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "codes.csv"
    assert main(["codes", str(local_export), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert rows[0] == {
        "group": "unmapped-local",
        "count": "2",
        "resource_type": "Observation",
        "field": "code",
        "system": LAB,
        "code": "AFP-S",
        "display": "AFP serum",
        "mapped_to": "unmapped",
        "mapped_by": "",
    }
    err = capsys.readouterr().err
    assert "unmapped-local 2, unmapped-standard 1, text-only 1" in err
    assert "1 input problems skipped" in err
    assert main(["codes", str(local_export), "--mappings", str(_site(tmp_path))]) == 0
    printed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["mapped_to"] for r in printed if r["code"] == "AFP-S"] == ["afp.afp_mass"]


def test_writer_round_trips_the_rows(local_export: Path) -> None:
    rows = collect_codes(local_export, load_mappings(), _problems().append)
    buffer = io.StringIO()
    write_codes_csv(rows, buffer)
    read = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert [(r["code"], int(r["count"])) for r in read] == [(r.code, r.count) for r in rows]


def test_server_url_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["codes", "https://fhir.example/r4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fhir-hcc: error: https://fhir.example/r4: `codes` reads files")
    assert "\n" not in err


# -- the same site directory in the cohort commands ------------------------------------------
def _p01_with_local_afp_code(tmp_path: Path) -> Path:
    bundle = json.loads((REFERENCE / "P01.json").read_text())
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["id"] == "P01-obs-002":  # the AFP before downstaging
            resource["code"] = {"coding": [{"system": LAB, "code": "AFP-S"}]}
    source = tmp_path / "data"
    source.mkdir()
    (source / "P01.json").write_text(json.dumps(bundle))
    shutil.copy(REFERENCE / "P02.json", source)  # the analysis in `run` needs two patients
    return source


def test_cohort_explain_and_run_take_the_site_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, site = _p01_with_local_afp_code(tmp_path), _site(tmp_path)
    without, with_site = tmp_path / "without.csv", tmp_path / "with.csv"
    assert main(["cohort", str(source), "--out", str(without)]) == 0
    assert main(["cohort", str(source), "--out", str(with_site), "--mappings", str(site)]) == 0
    [row_without] = [r for r in csv.DictReader(without.open()) if r["patient_id"] == "P01"]
    [row_with] = [r for r in csv.DictReader(with_site.open()) if r["patient_id"] == "P01"]
    assert (row_without["afp_pre_downstaging"], row_with["afp_pre_downstaging"]) == ("", "33398.0")
    capsys.readouterr()
    assert main(["explain", str(source), "P01", "--mappings", str(site)]) == 0
    assert (
        "afp_pre_downstaging    33398.0        Observation/P01-obs-002" in capsys.readouterr().out
    )
    out_dir = tmp_path / "run"
    assert main(["run", str(source), "--out-dir", str(out_dir), "--mappings", str(site)]) == 0
    [run_row] = [
        r for r in csv.DictReader((out_dir / "cohort.csv").open()) if r["patient_id"] == "P01"
    ]
    assert run_row["afp_pre_downstaging"] == "33398.0"


def test_an_extension_of_a_read_url_with_another_value_type_is_not_a_code(tmp_path: Path) -> None:
    # It used to end `fhir-hcc codes` with an AttributeError (found by mypy).
    histology = (
        "http://hl7.org/fhir/us/mcode/StructureDefinition/mcode-histology-morphology-behavior"
    )
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C22.0"}]},
        "extension": [{"url": histology, "valueString": "8170/3"}],
    }
    (tmp_path / "c.json").write_bytes(orjson.dumps(condition))
    problems: list[InputProblem] = []
    rows = collect_codes(tmp_path, load_mappings(), problems.append)
    assert [(row.field, row.code) for row in rows] == [("code", "C22.0")]
    assert problems == []
