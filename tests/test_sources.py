"""Reading FHIR files: bundles, single resources, NDJSON(.gz), references, and bad input."""

import gzip
from pathlib import Path

import orjson

from fhir_hcc.inputs import open_source
from fhir_hcc.mappers import SCHEMAS
from fhir_hcc.mappers.reading import Reader
from fhir_hcc.sources import FileSource, InputProblem, InTurn


def read_all(path: Path) -> tuple[list[dict], list[InputProblem]]:
    """Every resource of a source that the mapping stage can read, as JSON objects, and the
    problems the source and the mapping stage's reader report."""
    problems: list[InputProblem] = []
    reader = Reader(SCHEMAS, problems.append)
    resources = []
    for item, origin in FileSource(path).read(problems.append):
        if reader.read(item, origin) is not None:
            resources.append(orjson.loads(item))
    return resources, problems


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(data))
    return path


def test_directory_is_searched_recursively(tmp_path: Path) -> None:
    write_json(tmp_path / "a" / "patient.json", {"resourceType": "Patient", "id": "p1"})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "Observation.ndjson").write_text(
        '{"resourceType":"Observation","id":"o1"}\n\n{"resourceType":"Observation","id":"o2"}\n'
    )
    with gzip.open(tmp_path / "b" / "Condition.ndjson.gz", "wt") as handle:
        handle.write('{"resourceType":"Condition","id":"c1"}\n')
    (tmp_path / "notes.txt").write_text("ignored")
    write_json(tmp_path / "b" / "manifest.json", {"transactionTime": "2026-01-01", "output": []})
    resources, problems = read_all(tmp_path)
    assert sorted(r["id"] for r in resources) == ["c1", "o1", "o2", "p1"]
    # The manifest is recognised: a note (a warning), not a problem, and not read as data.
    assert [(p.origin.location, p.warning) for p in problems] == [
        (str(tmp_path / "b" / "manifest.json"), True)
    ]


def test_bundle_urn_and_absolute_references_become_local(tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1111", "resource": {"resourceType": "Patient"}},
            {
                "fullUrl": "http://server/fhir/Condition/c1",
                "resource": {
                    "resourceType": "Condition",
                    "id": "c1",
                    "subject": {"reference": "urn:uuid:1111"},
                },
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "o1",
                    "subject": {"reference": "urn:uuid:1111"},
                    "focus": [{"reference": "http://server/fhir/Condition/c1"}],
                }
            },
        ],
    }
    resources, problems = read_all(write_json(tmp_path / "b.json", bundle))
    patient, condition, observation = resources
    assert patient["id"] == "1111"
    assert condition["subject"]["reference"] == "Patient/1111"
    assert observation["focus"][0]["reference"] == "Condition/c1"
    assert problems == []


def test_search_outcome_entries_are_reported_not_yielded(tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1"}, "search": {"mode": "match"}},
            {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}},
        ],
    }
    resources, problems = read_all(write_json(tmp_path / "s.json", bundle))
    assert [r["id"] for r in resources] == ["p1"]
    assert [p.field for p in problems] == ["entry.search.mode"]


def test_bad_input_is_reported_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "x.ndjson").write_text(
        '{"resourceType":"Patient","id":"p1"}\n{"resourceType":"Obs\n[1, 2]\n{"id":"q"}\n'
    )
    (tmp_path / "broken.json").write_text("{not json")
    write_json(
        tmp_path / "empty.json", {"resourceType": "Bundle", "id": "b9", "type": "collection"}
    )
    resources, problems = read_all(tmp_path)
    assert [r["id"] for r in resources] == ["p1"]
    messages = sorted(str(p) for p in problems)
    assert any(m.startswith(f"{tmp_path}/broken.json: malformed JSON") for m in messages)
    assert any(m.startswith(f"{tmp_path}/x.ndjson:2: malformed JSON") for m in messages)
    assert f"{tmp_path}/x.ndjson:3: not a JSON object" in messages
    assert f"{tmp_path}/x.ndjson:4: ?/q: resourceType: missing resourceType" in messages
    assert f"{tmp_path}/empty.json: Bundle/b9: entry: Bundle has no entries" in messages


def test_open_source_dispatch(tmp_path: Path) -> None:
    source = open_source(tmp_path)
    assert isinstance(source, FileSource)
    assert open_source(source) is source


def test_hidden_files_are_noted_not_read(tmp_path: Path) -> None:
    """macOS `._X.ndjson` copies and `_`-files are not data (Spark and Hadoop skip them too)."""
    (tmp_path / "._Observation.ndjson").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / "_partial.json").write_text('{"resourceType": "Patient", "id": "p9"}')
    (tmp_path / ".pull-partial").mkdir()
    (tmp_path / ".pull-partial" / "Patient.ndjson").write_text('{"resourceType":"Patient"}\n')
    resources, problems = read_all(tmp_path)
    assert resources == []
    assert sorted((Path(p.origin.location).name, p.message, p.warning) for p in problems) == [
        ("._Observation.ndjson", "a hidden file, not FHIR: skipped", True),
        ("_partial.json", "a hidden file, not FHIR: skipped", True),
    ]


def test_a_line_cut_after_its_type_leaves_the_next_lines_their_own_types(tmp_path: Path) -> None:
    """The reader tries the last line's type first: a line cut inside its type's string must
    not make every later line decode as that type (an Observation read as a Condition would
    report its bodySite as malformed)."""
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "bodySite": {"text": "liver"},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": "2020-01-01",
    }
    (tmp_path / "a.ndjson").write_bytes(b'{"resourceType":"Condition\n' + orjson.dumps(observation))
    resources, problems = read_all(tmp_path)
    assert [r["id"] for r in resources] == ["o1"]
    assert [str(p).split(" (")[0] for p in problems] == [f"{tmp_path}/a.ndjson:1: malformed JSON"]


def test_a_file_gone_while_the_source_is_read_is_a_problem_not_an_error(tmp_path: Path) -> None:
    """Listed, then deleted before it is read (a pull cleaning up, a moved export): its problem
    is reported and the other files are read, with progress or without, one share or many."""
    for name in ("a", "b", "c"):
        write_json(tmp_path / f"{name}.json", {"resourceType": "Patient", "id": name})
    for progress in (None, lambda done, total: None):
        parts = FileSource(tmp_path).parts()
        reading = InTurn(parts, progress)
        problems: list[InputProblem] = []
        read = []
        for item, _ in reading.read(problems.append):
            read.append(orjson.loads(item)["id"])
            (tmp_path / "b.json").unlink(missing_ok=True)
        assert read == ["a", "c"]
        assert [str(p) for p in problems] == [
            f"{tmp_path}/b.json: cannot read file: No such file or directory"
        ]
        write_json(tmp_path / "b.json", {"resourceType": "Patient", "id": "b"})
