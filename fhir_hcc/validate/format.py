"""A run's results as text: one line per case, a diff and the derivation under each failure."""

from __future__ import annotations

from collections.abc import Sequence

from fhir_hcc.validate.model import CaseResult

_LABELS = {
    "pass": "PASS",
    "fail": "FAIL",
    "xfail": "XFAIL",
    "xpass": "XPASS",
    "skip": "SKIP",
    "error": "ERROR",
}


def format_result(result: CaseResult) -> str:
    """One line per case; a failure adds its field-by-field diff and each failing patient's
    derivation."""
    label = _LABELS[result.outcome]
    if result.outcome == "error":
        return f"{label:<6} {result.error}"
    lines = [f"{label:<6} {result.path}  {result.title}"]
    if result.outcome == "xfail":
        lines.append(f"       known discrepancy: {result.xfail}")
    if result.outcome == "skip":
        lines.append(f"       not all checked: {result.skipped}")
    if result.outcome == "xpass":
        lines.append(f"       passes although marked xfail ({result.xfail}): remove the mark")
    if result.outcome in ("fail", "xfail"):
        lines += [f"       - {mismatch}" for mismatch in result.mismatches]
        for patient, context in sorted(result.context.items()):
            lines.append(f"       how {patient} was derived:")
            lines += [f"         {line}" for line in context]
    return "\n".join(lines)


def summary(results: Sequence[CaseResult]) -> str:
    counts = {outcome: 0 for outcome in _LABELS}
    for result in results:
        counts[result.outcome] += 1
    text = (
        f"{len(results)} case(s): {counts['pass']} passed, {counts['fail']} failed, "
        f"{counts['xfail']} expected failure(s), {counts['xpass']} unexpectedly passed, "
        f"{counts['error']} unusable"
    )
    if counts["skip"]:
        text += f", {counts['skip']} not all checked (an optional extra is missing: see above)"
    return text
