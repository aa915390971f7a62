"""`fhir-hcc registry status|history|diff RUN_A RUN_B|cohort [--run N]`: read the registry."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Callable
from typing import Any

import orjson

from fhir_hcc.cli.arguments import add_registry_argument
from fhir_hcc.errors import ConfigError

# Seconds to wait for a lock before saying the registry is busy. A registry in WAL mode never
# makes a reader wait for a sync; one of schema 1 (rollback journal) does until the first sync of
# this version upgrades it.
READ_WAIT = 10


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = "Read the registry that `fhir-hcc sync` writes (nothing is changed)."
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="the registry's contents and the last run")
    history = actions.add_parser("history", help="the last runs")
    history.add_argument("--limit", type=int, default=20, help="runs to show (default 20)")
    diff = actions.add_parser("diff", help="patients who entered, left or changed between runs")
    diff.add_argument("run_a", metavar="RUN_A", type=int)
    diff.add_argument("run_b", metavar="RUN_B", type=int)
    cohort = actions.add_parser("cohort", help="a run's cohort table as CSV (default: last run)")
    cohort.add_argument("--run", type=int, help="run id (default: the last successful run)")
    for action in (status, history, diff, cohort):
        add_registry_argument(action)
        action.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fhir_hcc.registry import Registry, RegistryBusyError, default_path
    from fhir_hcc.registry.lock import lock_holder
    from fhir_hcc.registry.store import building_path, is_locked

    path = args.registry or default_path()
    if not path.is_file():
        if building_path(path).is_file():  # a first sync builds it beside its path
            raise RegistryBusyError(
                f"{path}: the first sync is writing it ({lock_holder(path)}); nothing is "
                "committed yet"
            )
        raise ConfigError(f"{path}: no registry here yet (run `fhir-hcc sync` first)")
    try:
        with Registry(path, timeout=READ_WAIT, reader=True) as registry, registry.snapshot():
            result = ACTIONS[args.action](registry, args)  # the last committed run, throughout
    except sqlite3.OperationalError as error:
        if not is_locked(error):
            raise
        raise RegistryBusyError(
            f"{path}: a sync is writing it ({lock_holder(path)}); read it again when the sync "
            "has finished"
        ) from None
    if args.json:
        sys.stdout.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(TEXT[args.action](result) + "\n")
    return 0


def _status(registry: Any, args: argparse.Namespace) -> dict[str, Any]:
    runs = registry.runs(limit=1)
    return registry.summary() | {"path": str(registry.path), "lastRun": runs[0] if runs else None}


def _history(registry: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    return registry.runs(limit=args.limit)


def _diff(registry: Any, args: argparse.Namespace) -> dict[str, Any]:
    from fhir_hcc.registry import diff_runs

    return diff_runs(registry, args.run_a, args.run_b).record()


def _cohort(registry: Any, args: argparse.Namespace) -> dict[str, Any]:
    from fhir_hcc.registry import RegistryError

    run_id = args.run
    if run_id is None:
        last = registry.last_run("ok", "partial")
        if last is None:
            raise RegistryError(f"{registry.path}: no successful run yet")
        run_id = last["id"]
    return {"run": run_id, "rows": list(registry.cohort(run_id).values())}


def _status_text(status: dict[str, Any]) -> str:
    counts = ", ".join(f"{name} {n}" for name, n in status["resources"].items()) or "none"
    lines = [
        f"registry {status['path']} ({status['bytes'] / 1e6:.1f} MB)",
        f"  resources: {counts}",
        f"  older versions {status['oldVersions']}, deletions {status['deletions']}",
    ]
    if status["lastRun"]:
        lines.append("  last run: " + _run_line(status["lastRun"]))
    return "\n".join(lines)


def _history_text(runs: list[dict[str, Any]]) -> str:
    return "\n".join(_run_line(run) for run in runs) or "no runs yet"


def _run_line(run: dict[str, Any]) -> str:
    totals: dict[str, int] = {}
    for counts in run["counts"].values():
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + value
    changes = ", ".join(f"{name} {totals.get(name, 0)}" for name in ("new", "changed", "deleted"))
    return (
        f"run {run['id']} {run['status']:<11} {run['mode']:<11} {run['started']} -> "
        f"{run['finished'] or '-'}  {changes}  {run['message'] or ''}".rstrip()
    )


def _diff_text(diff: dict[str, Any]) -> str:
    lines = [f"run {diff['runA']} -> run {diff['runB']}"]
    lines.append(f"  entered ({len(diff['entered'])}): {', '.join(diff['entered']) or '-'}")
    lines.append(f"  left ({len(diff['left'])}): {', '.join(diff['left']) or '-'}")
    lines.append(f"  changed ({len(diff['changed'])}):")
    for patient, fields in diff["changed"].items():
        for name, change in fields.items():
            lines.append(f"    {patient} {name}: {change['from']} -> {change['to']}")
    return "\n".join(lines)


def _cohort_text(cohort: dict[str, Any]) -> str:
    import pandas as pd

    return pd.DataFrame(cohort["rows"]).to_csv(index=False).rstrip("\n")


ACTIONS: dict[str, Callable[[Any, argparse.Namespace], Any]] = {
    "status": _status,
    "history": _history,
    "diff": _diff,
    "cohort": _cohort,
}
TEXT: dict[str, Callable[[Any], str]] = {
    "status": _status_text,
    "history": _history_text,
    "diff": _diff_text,
    "cohort": _cohort_text,
}
