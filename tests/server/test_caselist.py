"""Case-list files: ids, identifiers and CSVs; bad lines, repeats, and no values in messages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fhir_hcc.cli import main
from fhir_hcc.errors import ConfigError, InputError
from fhir_hcc.server.caselist import Entry, group, read_identifiers, read_patients

MRN = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_ids_one_a_line_skip_comments_blanks_and_report_repeats_and_bad_ids(tmp_path, caplog):
    text = "# from the tumour registry\n\np1\n  p_2  \np1\nnot an id\nePx" + "x" * 70 + "\n"
    population = read_patients(write(tmp_path, "ids.txt", text))
    assert population.entries == (Entry(3, "p1"), Entry(4, "p_2"), Entry(7, "ePx" + "x" * 70))
    assert population.repeats == ((5, 3),)
    assert population.bad == ((6, "not a FHIR resource id"),)
    assert population.record() == {
        "kind": "patients", "entries": 3, "file": "ids.txt", "badLines": [6], "repeatedLines": [5]
    }  # fmt: skip
    assert "ids.txt:6: skipped: not a FHIR resource id" in caplog.text
    assert "ids.txt:5: repeats line 3; used once" in caplog.text


@pytest.mark.parametrize("column", ["id", "patient_id", "Patient_ID"])
def test_ids_from_a_csv_column(tmp_path, column):
    path = write(tmp_path, "list.csv", f"name,{column}\nA,p1\nB,\nC,p2\n")
    assert read_patients(path).entries == (Entry(2, "p1"), Entry(4, "p2"))


def test_a_csv_without_the_column_names_file_and_line(tmp_path):
    with pytest.raises(
        InputError, match=r"list\.csv:1: the CSV header has no id or patient_id column"
    ):
        read_patients(write(tmp_path, "list.csv", "name,mrn\nA,1\n"))


def test_an_empty_list_is_an_error(tmp_path):
    with pytest.raises(InputError, match=r"empty\.txt: no usable patients"):
        read_patients(write(tmp_path, "empty.txt", "# nothing\n\n"))


def test_identifiers_with_and_without_a_system(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    text = f"{MRN}|E1001\nE1002\n|E1003\nhttp://x|a\\|b\n{MRN}|\n{MRN}|E1001\n"
    population = read_identifiers(write(tmp_path, "mrns.txt", text))
    assert population.entries == (Entry(1, "E1001", MRN), Entry(4, "a|b", "http://x"))
    assert [line for line, _ in population.bad] == [2, 3, 5]
    assert population.repeats == ((6, 1),)
    assert "no identifier system" in dict(population.bad)[2]
    assert "E1002" not in caplog.text and "E1003" not in caplog.text  # values are personal data
    defaulted = read_identifiers(write(tmp_path, "bare.txt", "E1002\nother|E9\n"), MRN)
    assert defaulted.entries == (Entry(1, "E1002", MRN), Entry(2, "E9", "other"))


def test_identifiers_from_a_csv_with_a_system_column(tmp_path):
    path = write(tmp_path, "mrns.csv", f"MRN,system\nE1,{MRN}\nE2,\n")
    population = read_identifiers(path, "urn:default")
    assert population.entries == (Entry(2, "E1", MRN), Entry(3, "E2", "urn:default"))


def test_a_group_id_must_be_an_id():
    assert group("cancer-registry").label == "Group/cancer-registry"
    with pytest.raises(ConfigError, match="is not a FHIR resource id"):
        group("a/b")


def test_cli_refuses_lists_without_a_server_and_a_system_without_identifiers(tmp_path, capsys):
    ids = write(tmp_path, "ids.txt", "p1\n")
    assert main(["cohort", str(tmp_path), "--out", "x.csv", "--patients", str(ids)]) == 2
    assert "name a server's patients" in capsys.readouterr().err
    arguments = ["pull", "https://h/fhir", "--out", "x", "--identifier-system", MRN]
    assert main(arguments) == 2
    assert "--identifier-system goes with --identifiers" in capsys.readouterr().err
    both = ["pull", "https://h/fhir", "--out", "x", "--patients", str(ids), "--group", "g"]
    with pytest.raises(SystemExit):
        main(both)  # argparse: not allowed together
