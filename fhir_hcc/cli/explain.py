"""`fhir-hcc explain SOURCE PATIENT_ID`: why a patient is in or out, with the sources behind it."""

from __future__ import annotations

import argparse

from fhir_hcc.cli.arguments import add_source_arguments
from fhir_hcc.cli.cohort import build_from_args
from fhir_hcc.errors import FhirHccError


def configure(parser: argparse.ArgumentParser) -> None:
    add_source_arguments(parser)
    parser.add_argument("patient_id", metavar="PATIENT_ID", help="Patient logical id")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = build_from_args(args)
    patient = result.patients.get(args.patient_id)
    if patient is None:
        raise FhirHccError(f"{args.source}: no resources for patient {args.patient_id!r}")
    verdict = "INCLUDED" if patient.included else f"EXCLUDED: {patient.reason}"
    print(f"Patient/{patient.patient_id}: {verdict}")
    print("derivation:")
    for step in patient.trail:
        print(f"  - {step}")
    if patient.row:
        print("fields:")
        for column, value in patient.row.items():
            sources = _abbreviated(patient.provenance.get(column, []))
            print(f"  {column:<22} {'' if value is None else value!s:<14} {sources}")
    notes = result.qc[result.qc["patient_id"] == patient.patient_id]
    if len(notes):
        print("data-quality notes:")
        for note in notes.itertuples():
            print(f"  - {note.rule}: {note.source} {note.detail}")
    return 0


def _abbreviated(sources: list[str], shown: int = 3) -> str:
    more = len(sources) - shown
    return ", ".join(sources[:shown]) + (f" (+{more} more)" if more > 0 else "")
