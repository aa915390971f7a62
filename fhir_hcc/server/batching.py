"""Packing patient ids and codes into search parameters that stay under a URL length limit."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx

_TOKEN_ESCAPES = str.maketrans({"\\": "\\\\", ",": "\\,", "|": "\\|", "$": "\\$"})


def token(system: str, code: str) -> str:
    """A FHIR token search value `system|code`, with the search syntax characters escaped."""
    return f"{system.translate(_TOKEN_ESCAPES)}|{code.translate(_TOKEN_ESCAPES)}"


def pack(
    values: Sequence[str], fits: Callable[[list[str]], bool], max_items: int
) -> list[list[str]]:
    """Greedy groups of at most `max_items` values, each as large as `fits` allows.

    A value that does not fit even alone still gets its own group: the server then decides.
    """
    groups: list[list[str]] = []
    current: list[str] = []
    for value in values:
        candidate = [*current, value]
        if current and (len(candidate) > max_items or not fits(candidate)):
            groups.append(current)
            candidate = [value]
        current = candidate
    if current:
        groups.append(current)
    return groups


def code_lists(url: str, codes: Sequence[tuple[str, str]], budget: int) -> list[str]:
    """`code` values (comma-joined tokens) whose search URL stays within `budget` characters."""
    tokens = [token(system, code) for system, code in codes]

    def fits(group: list[str]) -> bool:
        return len(str(httpx.URL(url, params={"code": ",".join(group)}))) <= budget

    return [",".join(group) for group in pack(tokens, fits, max(len(tokens), 1))]
