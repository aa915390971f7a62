"""Input problems: what could not be read, and where (file and line or Bundle entry).

A leaf every reading stage reports through: the sources, the mappers' reader, the server and
registry readers. A problem names places, `Type/id` and paths, never values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import msgspec


class Origin(msgspec.Struct, frozen=True, gc=False):  # one is made per NDJSON line: made in C
    location: str
    line: int | None = None  # NDJSON line or Bundle entry, 1-based

    def __str__(self) -> str:
        return self.location if self.line is None else f"{self.location}:{self.line}"


@dataclass(frozen=True, slots=True)
class InputProblem:
    origin: Origin
    resource: str | None  # "Type/id" when known
    field: str | None
    message: str
    warning: bool = False  # surfaced and counted, but no reason to stop a --strict run
    patient: str | None = None  # whose resource it was, when that could be read (row flagged)

    def __str__(self) -> str:
        parts = [str(self.origin), self.resource, self.field, self.message]
        return ": ".join(part for part in parts if part)

    def shifted(self, lines: int) -> InputProblem:
        """The problem as found in a part of a file read after `lines` lines of it."""
        if not lines or self.origin.line is None:
            return self
        origin = Origin(self.origin.location, self.origin.line + lines)
        return replace(self, origin=origin)


ProblemSink = Callable[[InputProblem], None]
