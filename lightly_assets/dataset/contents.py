"""Files' contents for many files at once: their sha256 (the key of exact copies), and reading them ahead.

Small files cost their open and read (~20 µs cached, ~90 µs not in the page cache), large ones their hashing
(hashlib lets go of the GIL there). From PROCESSES_FROM files on, they are hashed in worker processes, two per core
so that the reads of uncached files overlap; fewer in threads. Whoever reads a task's files whole, one after the
other (the hashes here, the picture statistics), asks the kernel for all of them first (`read_ahead`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from lightly_assets.workers import each_in_workers

# 50,000 JPEGs of ~1.5 KB on 2 cores, not in the page cache: one thread 4.2-4.6 s, 8 threads 4.6 s, 4 processes
# 3.1-3.3 s, and 0.8 s with the read-ahead (0.6 s cached). From 10,000 files on, as for the headers (headers.py).
PROCESSES_FROM = 10_000
MAX_PROCESSES = 8
PER_TASK = 256  # files per task: one round trip to a worker process
BLOCK = 1 << 20  # bytes read at a time: a large video is never held whole
READ_AHEAD_BYTES = 64 << 20  # per call of read_ahead (a task's files)


def file_sha256(path: str) -> str:
    """The hex sha256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def read_ahead(paths: Sequence[str], budget: int = READ_AHEAD_BYTES) -> None:
    """Ask the kernel to read these files into the page cache now, all at once (`posix_fadvise` WILLNEED), for a
    caller about to read them whole one after the other: uncached files then arrive while the first are used. Up to
    `budget` bytes: more could push the first files out of the cache before they are read."""
    if len(paths) < 2 or not hasattr(os, "posix_fadvise"):
        return
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue  # the caller's own read says what is wrong with it
        try:
            budget -= os.fstat(fd).st_size
            if budget < 0:
                return
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)


def file_sha256s_here(paths: Sequence[str]) -> list[str]:
    """`file_sha256` of each path, in order, in this thread (read ahead first)."""
    read_ahead(paths)
    return [file_sha256(path) for path in paths]


def file_sha256s(paths: Sequence[str]) -> list[str]:
    """`file_sha256` of each path, in order: in worker processes for many files, else in threads."""
    return each_in_workers(file_sha256s_here, paths, "file hashes", PROCESSES_FROM, PER_TASK, MAX_PROCESSES)
