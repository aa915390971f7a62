"""Pull progress: rich bars on a terminal, plain periodic lines otherwise, or nothing."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Protocol, TextIO

from fhir_hcc.server.client import RequestStats

if TYPE_CHECKING:
    from rich.progress import TaskID


class Progress(Protocol):
    """`phase` starts a step of `steps` units (searches, patients, files; 0: a wait of unknown
    length); `advance` reports resources received and `steps` units done (0: only resources)."""

    def phase(self, name: str, steps: int, patients: int = 0, unit: str = "searches") -> None: ...

    def advance(self, resources: int, stats: RequestStats, steps: int = 1) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    def phase(self, name: str, steps: int, patients: int = 0, unit: str = "searches") -> None:
        pass

    def advance(self, resources: int, stats: RequestStats, steps: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class LineProgress:
    """One line per phase and at most one per `interval` seconds: fine for logs and CI."""

    def __init__(self, stream: TextIO, interval: float = 10.0) -> None:
        self.stream = stream
        self.interval = interval
        self._name = ""
        self._steps = 0
        self._unit = ""
        self._done = 0
        self._resources = 0
        self._last = 0.0

    def phase(self, name: str, steps: int, patients: int = 0, unit: str = "searches") -> None:
        self._name, self._steps, self._unit, self._done = name, steps, unit, 0
        self._last = time.monotonic()
        for_patients = f" for {patients} patients" if patients else ""
        self._print(f"{name}: {steps} {unit}{for_patients}" if steps else name)

    def advance(self, resources: int, stats: RequestStats, steps: int = 1) -> None:
        self._done += steps
        self._resources += resources
        now = time.monotonic()
        finished = steps and self._done == self._steps
        if now - self._last >= self.interval or finished:
            self._last = now
            self._print(
                f"{self._name}: {self._done}/{self._steps} {self._unit}, "
                f"{stats.requests} requests, {self._resources} resources"
            )

    def close(self) -> None:
        pass

    def _print(self, text: str) -> None:
        print(f"fhir-hcc: pull: {text}", file=self.stream, flush=True)


class RichProgress:
    """A bar per phase with requests, resources and an ETA."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bars

        self._bars = Bars(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[requests]} requests, {task.fields[resources]} resources"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self._bars.start()
        self._task: TaskID  # set by phase()
        self._resources = 0

    def phase(self, name: str, steps: int, patients: int = 0, unit: str = "searches") -> None:
        label = f"{name} ({patients} patients)" if patients else name
        self._task = self._bars.add_task(label, total=steps or None, requests=0, resources=0)

    def advance(self, resources: int, stats: RequestStats, steps: int = 1) -> None:
        self._resources += resources
        self._bars.update(
            self._task, advance=steps, requests=stats.requests, resources=self._resources
        )

    def close(self) -> None:
        self._bars.stop()


def progress_for(stream: TextIO = sys.stderr) -> Progress:
    """Bars when `stream` is a terminal, lines when it is not."""
    return RichProgress(stream) if stream.isatty() else LineProgress(stream)
