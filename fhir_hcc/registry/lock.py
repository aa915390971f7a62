"""One sync at a time per registry: an advisory `flock` on `<registry>.lock`.

The kernel drops the lock when its process ends, however it ends (SIGKILL included), so a stale
lock never blocks the next run. The file holds the holder's pid and start time for the message.
Windows has no `flock`: there the lock is a byte-range lock (`msvcrt.locking`) on one byte far
past the text, which other processes can still read; Windows also drops it with the process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from fhir_hcc.registry.errors import RegistryBusyError

if sys.platform == "win32":  # not tested here: the test machines are Linux
    import msvcrt

    _LOCKED_BYTE = 1 << 30  # past any holder text, which stays readable

    def _try_lock(handle: IO[str]) -> bool:
        handle.seek(_LOCKED_BYTE)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(handle: IO[str]) -> None:
        handle.seek(_LOCKED_BYTE)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(handle: IO[str]) -> bool:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(handle: IO[str]) -> None:
        fcntl.flock(handle, fcntl.LOCK_UN)


def lock_path(registry: Path) -> Path:
    return registry.with_name(f"{registry.name}.lock")


def lock_holder(registry: Path) -> str:
    """`pid N, started T` of the sync holding the lock, as it wrote it."""
    try:
        return lock_path(registry).read_text().strip() or "another process"
    except OSError:
        return "another process"


@contextmanager
def sync_lock(registry: Path) -> Iterator[None]:
    """Hold the registry's lock, or raise RegistryBusyError naming the holder."""
    path = lock_path(registry)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        if not _try_lock(handle):
            raise RegistryBusyError(
                f"{registry}: another sync is running ({lock_holder(registry)}); this one did "
                "nothing"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = datetime.now(UTC).isoformat(timespec="seconds")
        handle.write(f"pid {os.getpid()}, started {started}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            _unlock(handle)
