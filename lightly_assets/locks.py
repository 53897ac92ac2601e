"""The one file lock of the project: an exclusive `flock` on a lock file, for processes sharing one machine.

Used where several `lightly-assets` processes (or Dagster run workers) touch one file: the Dagster instance's
SQLite storages while they are created, and a LightlyStudio DuckDB file, which has one writer at a time.
`flock` is released by the kernel when a process dies, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

POLL_S = 0.1


class LockTimeout(TimeoutError):
    """The lock was held by another process for longer than the caller was willing to wait."""


@contextlib.contextmanager
def exclusive(lock_path: Path, timeout_s: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (created with its folder) for the block.

    Waits as long as it takes when `timeout_s` is None; else raises `LockTimeout` once it has waited that long.
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        if timeout_s is None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        else:
            _acquire_within(handle.fileno(), lock_path, timeout_s)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _acquire_within(fd: int, lock_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockTimeout(f"{lock_path} held by another process for more than {timeout_s:g} s") from None
            time.sleep(POLL_S)
