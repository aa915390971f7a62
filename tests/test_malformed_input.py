"""No input shape stops a run (issue 10): every malformed resource costs only what it touches.

Property tests mutate the reference fixtures' resources, of every type the mappers read, at
random element paths, and check that the run finishes, that the mutated resource's line is
reported when it no longer fits its mapper's struct, and that every other patient's row and QC
records are exactly what they were. Then the malformed-file corpus (`fixtures/malformed/`), a
third-party export (Synthea), a 100 MB line, the command line, and PHI in messages.
"""

from __future__ import annotations

import copy
import gzip
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fhir_hcc
from fhir_hcc.cli import main
from fhir_hcc.cohort import CohortResult, collect, derive_cohort
from fhir_hcc.config import CohortConfig
from fhir_hcc.fhir.references import parse_reference, subject_of
from fhir_hcc.mappers import MAPPERS, SCHEMAS
from fhir_hcc.mappers.observation import needs_reading_whole
from fhir_hcc.sources import FileSource, Item, Origin, ProblemSink
from fhir_hcc.validate import find_cases, format_result, load_case, run_case

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures" / "salvage2004"
MALFORMED = ROOT / "fixtures" / "malformed"
SYNTHEA = ROOT / "fixtures" / "synthea-sample-10"
# Included patients of every group and excluded ones; their Medications come along.
SUBSET = ("P01", "P03", "P07", "P20", "N04", "N05", "N07")
# Types the reference fixtures do not hold, added for N04 so that every mapped type is mutated.
EXTRA = [
    {
        "resourceType": "MedicationStatement",
        "id": "n04-ms",
        "status": "completed",
        "medicationCodeableConcept": {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "3639"}]
        },
        "subject": {"reference": "Patient/N04"},
        "effectivePeriod": {"start": "1997-03-01", "end": "1997-03-02"},
        "dosage": [{"route": {"text": "intravenous"}}],
    },
    {
        "resourceType": "MedicationRequest",
        "id": "n04-mr",
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "#drug"},
        "contained": [{"resourceType": "Medication", "id": "drug", "code": {"text": "cisplatin"}}],
        "subject": {"reference": "Patient/N04"},
        "authoredOn": "1997-03-01",
        "dosageInstruction": [{"route": {"coding": [{"code": "47625008"}]}}],
        "identifier": [{"system": "urn:example:rx", "value": "rx-1"}],
    },
    {
        "resourceType": "DiagnosticReport",
        "id": "n04-dr",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "60568-3"}]},
        "subject": {"reference": "Patient/N04"},
        "effectiveDateTime": "1997-04-01T10:00:00+08:00",
        "conclusion": "No viable tumour.",
    },
]


def _owner(resource: dict[str, Any]) -> str:
    if resource["resourceType"] in ("Patient", "Medication"):
        return resource["id"]
    target = subject_of(resource)
    assert target is not None
    return target.id


def _medication_users(resources: list[dict[str, Any]]) -> dict[str, set[str]]:
    users: dict[str, set[str]] = {}
    for resource in resources:
        reference = (resource.get("medicationReference") or {}).get("reference", "")
        target = parse_reference(reference) if reference else None
        if target is not None:
            users.setdefault(target.id, set()).add(_owner(resource))
    return users


def _subset() -> list[dict[str, Any]]:
    everything = [orjson.loads(line) for line, _ in FileSource(FIXTURES).read(pytest.fail)]
    users = _medication_users(everything)
    chosen = [
        resource
        for resource in everything
        if _owner(resource) in SUBSET or users.get(_owner(resource), set()) & set(SUBSET)
    ]
    return chosen + EXTRA


RESOURCES = _subset()
USERS = _medication_users(RESOURCES)
MAPPED = [i for i, r in enumerate(RESOURCES) if r["resourceType"] in SCHEMAS]
MAPPINGS = fhir_hcc.load_mappings()
CONFIG = CohortConfig()


class _Lines:
    """The subset as one NDJSON-like source, line i+1 holding resource i."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.lines = [orjson.dumps(resource) for resource in resources]

    def read(self, sink: ProblemSink) -> Iterator[Item]:
        for number, line in enumerate(self.lines, start=1):
            yield line, Origin("subset.ndjson", number)


def _run(resources: list[dict[str, Any]]) -> CohortResult:
    return derive_cohort(collect(_Lines(resources), MAPPINGS, CONFIG), CONFIG)


def _per_patient(result: CohortResult) -> dict[str, Any]:
    qc = result.qc[result.qc.patient_id != ""]
    notes = {
        pid: sorted(map(tuple, rows.values.tolist())) for pid, rows in qc.groupby("patient_id")
    }
    return {
        pid: (patient.step, patient.reason, patient.row, notes.get(pid, []))
        for pid, patient in result.patients.items()
    }


BASELINE = _per_patient(_run(RESOURCES))
assert sum(1 for step, *_ in BASELINE.values() if step == "included") == 4  # the subset is real

# -- mutations -----------------------------------------------------------------------------------
DELETE = object()
_BAD_DATES = ["2001-13-45", "20-01", "T", "2001-02-30T25:61:00Z", "1996-1-5", "0000-00-00"]
_ATOMS = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.just(""),
    st.text(max_size=12).filter(lambda text: "/" not in text and text not in BASELINE),
    st.just("x" * 10_000),
    st.sampled_from(_BAD_DATES),
)
_VALUES = st.one_of(
    _ATOMS,
    st.lists(_ATOMS, max_size=3),
    st.dictionaries(st.sampled_from(["coding", "code", "x", "reference"]), _ATOMS, max_size=2),
    st.sampled_from(["DELETE", "AS_LIST", "AS_OBJECT"]),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        if prefix or key != "resourceType":
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))


def _mutate(resource: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    parent = resource
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if value == "DELETE":
        del parent[key]
    elif value == "AS_LIST":  # a list where an object or a string belongs
        parent[key] = [parent[key]]
    elif value == "AS_OBJECT":  # an object where a list or a string belongs
        parent[key] = {"value": parent[key]}
    else:
        parent[key] = value


@st.composite
def mutated(draw: st.DrawFn) -> tuple[int, dict[str, Any]]:
    index = draw(st.sampled_from(MAPPED))
    resource = copy.deepcopy(RESOURCES[index])
    for _ in range(draw(st.integers(1, 4))):
        paths = list(_paths(resource))
        if not paths:
            break
        _mutate(resource, draw(st.sampled_from(paths)), draw(_VALUES))
    return index, resource


def _fits(resource: dict[str, Any]) -> bool:
    """Whether the resource, read as the mapping docs say (null is absent, contained resources
    of types not read there are left out, a routine Observation read for its date only), fits
    the struct it is read into."""
    schema = SCHEMAS[resource["resourceType"]]
    readable = _without_nulls(resource)
    if isinstance(readable.get("contained"), list):
        readable["contained"] = [
            item
            for item in readable["contained"]
            if isinstance(item, dict) and item.get("resourceType") in schema.CONTAINED
        ]
    text = orjson.dumps(readable)
    first = MAPPERS[resource["resourceType"]].first
    if first is not None:  # an Observation no mapping lists is read for its date only
        try:
            read_first = msgspec.json.decode(text, type=first)
        except msgspec.ValidationError:
            return False
        if not needs_reading_whole(MAPPINGS)(read_first):
            return True
    try:
        msgspec.json.decode(text, type=schema)
    except msgspec.ValidationError:
        return False
    return True


def _without_nulls(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _without_nulls(value) for key, value in node.items() if value is not None}
    if isinstance(node, list):
        return [_without_nulls(item) for item in node if item is not None]
    return node


@settings(
    max_examples=2500,
    deadline=None,
    derandomize=True,  # the same examples in every run: a failure is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(mutated())
def test_a_malformed_resource_costs_only_its_own_patient(case: tuple[int, dict[str, Any]]) -> None:
    index, resource = case
    original = RESOURCES[index]
    resources = [*RESOURCES[:index], resource, *RESOURCES[index + 1 :]]
    result = _run(resources)  # no exception escapes

    touched = {_owner(original)} | USERS.get(original["id"], set())
    after = _per_patient(result)
    for patient, before in BASELINE.items():
        if patient not in touched:
            assert after.get(patient) == before, patient

    mine = [p for p in result.problems if p.origin.line == index + 1]
    assert all(p.origin.line == index + 1 for p in result.problems)
    if not _fits(resource):
        assert mine, "a resource that no longer fits its struct must be reported"
    if not _fits(resource) and _still_names_its_owner(resource, original):
        for patient in touched:  # the patient, or those who were given its Medication
            record = result.patients.get(patient)
            if record is not None and record.included:
                assert "input_problem" in (record.row["flags"] or ""), patient


def _still_names_its_owner(resource: dict[str, Any], original: dict[str, Any]) -> bool:
    if original["resourceType"] in ("Patient", "Medication"):
        return resource.get("id") == original["id"]
    target = subject_of(resource)
    return target is not None and target.id == _owner(original)


# -- files -------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", find_cases([MALFORMED]), ids=lambda p: p.stem)
def test_malformed_file_corpus(path: Path) -> None:
    result = run_case(load_case(path))
    assert not result.mismatches, format_result(result)


def test_synthea_sample_every_resource_read_and_counted() -> None:
    """Third-party data: all of it read, nothing a problem, the exporter's log only noted."""
    result = fhir_hcc.build_cohort(SYNTHEA)
    expected: dict[str, int] = {}
    for path in SYNTHEA.glob("*.ndjson.gz"):
        with gzip.open(path) as handle:
            expected[path.name.split(".")[0]] = sum(1 for line in handle if line.strip())
    flow = result.flow["input"]
    assert flow["resources_read"] == expected
    assert sum(expected.values()) == 7160
    assert (flow["problems"], flow["warnings"]) == (0, 1)
    [note] = result.problems
    assert note.warning and note.origin.location.endswith("log.ndjson")
    assert len(result.table) == 0
    assert result.flow["steps"][0] == {
        "step": "seen",
        "n": 13,
        "left_out": {"no HCC diagnosis": 13},
    }


def test_a_100_mb_line_is_read(tmp_path: Path) -> None:
    note = {"resourceType": "DocumentReference", "id": "huge", "status": "current"}
    big = orjson.dumps(note)[:-1] + b',"content":[{"attachment":{"data":"' + b"A" * 100_000_000
    lines = [big + b'"}}]}', orjson.dumps(RESOURCES[0])]
    (tmp_path / "export.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    result = fhir_hcc.build_cohort(tmp_path, workers=1)
    assert result.flow["input"]["problems"] == 0
    assert result.flow["input"]["resources_read"]["DocumentReference"] == 1


def test_the_command_line_finishes_and_strict_stops(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    bad = copy.deepcopy(next(r for r in RESOURCES if r["resourceType"] == "Condition"))
    bad["verificationStatus"] = [bad["verificationStatus"]]
    export = tmp_path / "export.ndjson"
    export.write_bytes(b"\n".join(orjson.dumps(r) for r in [*RESOURCES, bad]) + b"\n")
    out = tmp_path / "out"
    args = ["cohort", str(export), "--out", str(out / "c.csv"), "--flow", str(out / "f.json")]
    assert main(args) == 0
    line = len(RESOURCES) + 1
    message = (
        f"{export}:{line}: Condition/{bad['id']}: verificationStatus: "
        "expected a string or an object, got a list; resource not used"
    )
    assert message in caplog.messages  # logged as a warning, on stderr outside pytest
    assert orjson.loads((out / "f.json").read_bytes())["input"]["problems"] == 1
    capsys.readouterr()
    assert main([*args, "--strict"]) == 2
    assert message in capsys.readouterr().err


def test_no_phi_in_messages(tmp_path: Path) -> None:
    """A malformed Patient's name, address, identifier or birth date never reaches a message."""
    secrets = ["Smith-Secret", "42 Hidden Lane", "MRN-0042-SECRET", "1911-11-11"]
    patient = {
        "resourceType": "Patient",
        "id": "p-phi",
        "name": {"family": secrets[0]},  # an object where a list belongs: not read anyway
        "address": [{"line": secrets[1]}],
        "identifier": {"value": secrets[2]},  # malformed, and read (business identifier)
        "birthDate": [secrets[3]],
        "gender": secrets[0],
    }
    (tmp_path / "p.ndjson").write_bytes(orjson.dumps(patient) + b"\n")
    result = fhir_hcc.build_cohort(tmp_path)
    text = "\n".join(map(str, result.problems)) + result.qc.to_csv()
    assert result.problems and all(secret not in text for secret in secrets)


def test_the_mapping_docs_say_what_each_element_costs() -> None:
    """The table in mappings/README.md is the structs' ESSENTIAL sets, choice types folded."""
    text = (ROOT / "mappings" / "README.md").read_text()
    rows = {}
    for line in text.split("## Malformed resources")[1].splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0] in SCHEMAS:
            # Notes in brackets may hold commas: drop them before splitting the names.
            names = re.sub(r" \([^)]*\)", "", cells[1]).split(", ")
            rows[cells[0]] = {_element(name) for name in names}
    assert set(rows) == set(SCHEMAS)
    for name, schema in SCHEMAS.items():
        essential = {_element(field) for field in schema.ESSENTIAL - {"resourceType"}}
        assert rows[name] == essential, name


def _element(name: str) -> str:
    """`onsetDateTime`, `onset[x]` -> `onset`; `medicationReference` -> `medication[x]`."""
    if name.startswith("medication") and name != "medication":
        return "medication[x]"
    for suffix in ("[x]", "DateTime", "Instant", "Period", "Date", "CodeableConcept",
                   "Quantity", "String"):  # fmt: skip
        if name.endswith(suffix) and name != suffix:
            return name.removesuffix(suffix)
    return name


# -- what the server sends: a CapabilityStatement, a resource to capture ------------------------
_STATEMENT = {
    "resourceType": "CapabilityStatement",
    "fhirVersion": "4.0.1",
    "software": {"name": "x", "version": "1"},
    "implementation": {"description": "d", "url": "u"},
    "format": ["json"],
    "rest": [
        {
            "mode": "server",
            "operation": [{"name": "export", "definition": "http://x/Patient-export"}],
            "resource": [
                {
                    "type": "Condition",
                    "searchParam": [{"name": "code"}, {"name": "patient"}],
                    "interaction": [{"code": "search-type"}],
                    "searchInclude": ["Condition:subject"],
                }
            ],
        }
    ],
}


@st.composite
def _mutated_copy(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    copied = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(copied))
        if paths:
            _mutate(copied, draw(st.sampled_from(paths)), draw(_VALUES))
    return copied


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(_mutated_copy(_STATEMENT))
def test_a_capability_statement_of_any_shape_is_judged(statement: dict[str, Any]) -> None:
    from fhir_hcc.fhir import capability

    read = capability.statement(statement)
    capability.software(read), capability.identity(read), capability.fhir_version(read)
    assert capability.search_parameters(read, "Condition") >= {"_id"}
    capability.searchable(read, "Condition"), capability.export_levels(read)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(
    st.sampled_from([r for r in RESOURCES if r["resourceType"] == "Patient"]).flatmap(_mutated_copy)
)
def test_capture_deidentifies_a_resource_of_any_shape(patient: dict[str, Any]) -> None:
    from fhir_hcc.capture import Deidentifier

    bundle = Deidentifier(b"a key of sixteen bytes or more", "http://x/fhir").bundle(
        "P01", [patient]
    )
    text = orjson.dumps(bundle)
    for given_name in ("Salvage",):  # the fixtures' synthetic names never survive capture
        assert given_name.encode() not in text
