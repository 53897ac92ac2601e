"""Atomic file outputs: write a unique temporary file beside the target, then rename it into place.

A run that fails or is killed half-way leaves the previous good file untouched (at most a hidden
`.name.*.tmp` file that the next write does not depend on).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_output(path: Path | str, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a binary file whose content replaces `path` only when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp makes it private; outputs are shared like any other file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path | str, data: bytes) -> Path:
    """Replace `path` with `data` atomically; returns the path."""
    with atomic_output(path) as handle:
        handle.write(data)
    return Path(path)
