"""Progress of a long read of files (`cohort`, `explain`, `run`, `codes`) as the CLI shows it:
a bar on a terminal, a line every few seconds otherwise (logs, CI), nothing for a small input."""

from __future__ import annotations

import time
from typing import Any, TextIO

# Below this much input a run takes seconds: no progress is shown.
SHOWN_FROM_BYTES = 64 * 2**20
_MB = 2**20


class ReadingProgress:
    """Called with (bytes read, bytes in all) by the cohort stage as its file parts finish: a
    file, or a slice of a large plain NDJSON file read by several workers (so one big file read
    by one process shows its progress only when it ends)."""

    def __init__(self, stream: TextIO, interval: float = 10.0) -> None:
        self.stream = stream
        self.interval = interval
        self._bar: Any = None
        self._task: Any = None
        self._last = float("-inf")  # the first call prints

    def __call__(self, done: int, total: int) -> None:
        if total < SHOWN_FROM_BYTES:
            return
        if self.stream.isatty():
            self._draw(done, total)
        elif done == total or time.monotonic() - self._last >= self.interval:
            self._last = time.monotonic()
            print(
                f"fhir-hcc: reading: {done // _MB:,} of {total // _MB:,} MB "
                f"({100 * done // total}%)",
                file=self.stream,
                flush=True,
            )

    def _draw(self, done: int, total: int) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                "reading",
                BarColumn(),
                DownloadColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
            )
            self._bar.start()
            self._task = self._bar.add_task("reading", total=total)
        self._bar.update(self._task, completed=done)
        if done >= total:
            self._bar.stop()
