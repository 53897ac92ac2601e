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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=tmp_prefix(path.name), suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp makes it private; outputs are shared like any other file
        os.replace(tmp, path)
    except OSError as exc:  # a full disk says "No space left on device": say which file could not be written
        Path(tmp).unlink(missing_ok=True)
        raise _naming(exc, path) from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Room for the random part and suffix that mkstemp adds (".XXXXXXXX.tmp"), within NAME_MAX (255 bytes).
_NAME_ROOM = 200


def tmp_prefix(name: str) -> str:
    """A hidden temporary name beside `name` that stays within NAME_MAX whatever the length of `name`."""
    prefix = f".{name}."
    while len(prefix.encode("utf-8", "surrogateescape")) > _NAME_ROOM:
        prefix = prefix[: len(prefix) // 2]
    return prefix


def _naming(exc: OSError, path: Path) -> OSError:
    """The same error, with the output file as its filename when the library did not name one."""
    if exc.filename is not None and not str(exc.filename).endswith(".tmp"):
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


def write_bytes_atomic(path: Path | str, data: bytes) -> Path:
    """Replace `path` with `data` atomically; returns the path."""
    with atomic_output(path) as handle:
        handle.write(data)
    return Path(path)
