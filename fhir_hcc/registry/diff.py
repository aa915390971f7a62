"""Which patients entered, left or changed between two runs' cohort snapshots, field by field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_hcc.registry.errors import RegistryError
from fhir_hcc.registry.store import Registry

SNAPSHOT_STATUSES = frozenset({"ok", "partial"})
# Bookkeeping columns: which resources back a value is not itself a change of the value.
IGNORED_FIELDS = frozenset({"provenance"})


@dataclass
class CohortDiff:
    run_a: int
    run_b: int
    entered: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    # patient -> field -> (value in run A, value in run B)
    changed: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {
            "runA": self.run_a,
            "runB": self.run_b,
            "entered": self.entered,
            "left": self.left,
            "changed": {
                patient: {name: {"from": a, "to": b} for name, (a, b) in fields.items()}
                for patient, fields in self.changed.items()
            },
        }


def diff_runs(registry: Registry, run_a: int, run_b: int) -> CohortDiff:
    """Compare the cohort snapshots of two runs (either order)."""
    for run_id in (run_a, run_b):
        status = registry.run(run_id)["status"]
        if status not in SNAPSHOT_STATUSES:
            raise RegistryError(f"run {run_id} has no cohort snapshot (status {status})")
    before, after = registry.cohort(run_a), registry.cohort(run_b)
    diff = CohortDiff(
        run_a, run_b, sorted(set(after) - set(before)), sorted(set(before) - set(after))
    )
    for patient in sorted(set(before) & set(after)):
        fields = _changed_fields(before[patient], after[patient])
        if fields:
            diff.changed[patient] = fields
    return diff


def _changed_fields(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    names = sorted((set(a) | set(b)) - IGNORED_FIELDS)
    return {name: (a.get(name), b.get(name)) for name in names if a.get(name) != b.get(name)}
