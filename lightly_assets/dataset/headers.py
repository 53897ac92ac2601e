"""Image sizes from the files' headers (Pillow reads no pixels), as a first upload to LightlyStudio needs them.

Pillow parses a header in Python under the GIL (~30 µs for a cached JPEG), so threads only overlap the reads of
files not in the page cache; from PROCESSES_FROM files on, the headers are read in worker processes, two per core
so that the reads of uncached files overlap too.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from lightly_assets.workers import each_in_workers

# 100,000 64x48 JPEGs on 2 cores, cached / not in the page cache: 4 threads 5.5 / 10.8 s, 2 processes 1.7 / 8.2 s,
# 4 processes 1.9 / 5.8 s. Four spawned workers start in ~0.15 s (they import Pillow, not the run's modules): on
# cached files they break even near 5,000.
PROCESSES_FROM = 10_000
MAX_PROCESSES = 8  # each ~40 MB
# Files per task: one round trip to a worker process, or one thread task (one future per file cost more in GIL
# hand-offs than the reads: 20,000 cached files 1.8 s, tasks of 256 1.0 s).
PER_TASK = 256


def header_size(path: str) -> tuple[int, int] | None:
    """Width and height from the image's header, or None when Pillow cannot open it."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def header_sizes(paths: Sequence[str]) -> list[tuple[int, int] | None]:
    """`header_size` of each path, in order."""
    return [header_size(path) for path in paths]


def image_sizes(paths: Sequence[str]) -> list[tuple[int, int] | None]:
    """`header_size` of each path, in order: in worker processes for many files, else in threads."""
    return each_in_workers(header_sizes, paths, "image headers", PROCESSES_FROM, PER_TASK, MAX_PROCESSES)
