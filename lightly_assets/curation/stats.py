"""Per-sample picture statistics (brightness, colour, information, sharpness, shape) and the perceptual hash,
from one decode at ANALYSIS pixels, cached by file so that a re-run decodes only new or changed files.

Why its own decode: judging blur needs more pixels than the network's 64x64 input. A JPEG is decoded at a
reduced DCT scale (Pillow's `draft`) straight to YCbCr, so the luminance is the Y plane and the colour test reads
Cb/Cr, with no colour conversion; then boxed down to ANALYSIS on the long side, so that the sharpness of a 640-px
and of a 4000-px photo are measured at the same scale. Video frames come from one sequential PyAV decode,
scaled by swscale. It is not shared with the embedding step: that one decodes at the network's scale (a JPEG
draft of at least 128 px for the default 64 px input, not 256). Many files are measured in worker processes
(PROCESSES_FROM), the pictures of one size in a task together (GROUP at a time); bench_scale measures the step.

Statistics: those of `measures.MEASURES` (their arithmetic, for many pictures of one size at once) and `width`,
`height`: the picture as viewers show it (EXIF orientation applied), before any scaling.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from PIL import Image

from lightly_assets.curation.errors import CurationError
from lightly_assets.curation.measures import MEASURES, measure
from lightly_assets.curation.phash import BITS, SMALL, dct_hashes, hash_grid
from lightly_assets.curation.state_file import save_state
from lightly_assets.dataset.contents import read_ahead
from lightly_assets.dataset.keys import KEY_COLUMNS, joined_text, matching_rows, split_text
from lightly_assets.dataset.orientation import exif_upright
from lightly_assets.dataset.video import iter_frames
from lightly_assets.errors import exception_line
from lightly_assets.workers import results_in_workers, usable_cores

ANALYSIS = 256  # long side, in pixels, that statistics are measured at
STATS = ["width", "height", *MEASURES]
CACHED = pd.Index([*KEY_COLUMNS, *STATS, "hash", "broken"])  # the columns of the statistics cache, in order
CACHE_VERSION = 2  # 2: text columns NUL-joined, not compressed; 1 is still read
TEXT = ("source", "filename", "broken")  # the text columns of the cache
_EXIF_ORIENTATION, _QUARTER_TURNS = 0x0112, (5, 6, 7, 8)  # EXIF: transposed or turned by 90 degrees
# From this many files on, the statistics are computed in worker processes, one per core. Per file they are mostly
# small numpy calls that hold the GIL, so threads scale badly (64x48 JPEGs, 2 cores: 4 threads 0.88 ms a file, one
# thread 0.57 ms, two processes 0.29 ms); a spawned worker costs ~1 s to start, which pays from a few thousand on.
PROCESSES_FROM = 4096
MAX_PROCESSES = 8  # each holds its own numpy, Pillow and SciPy (~150 MB)
CHUNK = 256  # files per task of a worker process
GROUP = 256  # pictures held before they are measured: bounds a task's pixels (256 at 256x192: 38 MB), videos too


class Picture(NamedTuple):
    """One sample's pixels at analysis size, (h, w, 3) uint8 YCbCr, and its size as viewers show it."""

    row: int  # its position in the samples
    ycbcr: np.ndarray
    grid: np.ndarray  # the SMALLxSMALL luminance its hash is taken of (`phash.hash_grid`)
    width: int
    height: int

    @classmethod
    def of(cls, row: int, small: Image.Image, width: int, height: int) -> Picture:
        """From the YCbCr image at analysis size: the grid from its Y band as Pillow holds it (no array round trip)."""
        return cls(row, np.asarray(small), hash_grid(small.getchannel(0)), width, height)


class Measured(NamedTuple):
    """One task's results as arrays: a worker process sends a few arrays back, not a dict per file."""

    rows: np.ndarray  # (k,) int64: the row positions of the samples measured
    values: np.ndarray  # (k, len(STATS)) float64
    hashes: np.ndarray  # (k, 8) uint8: their perceptual hashes
    broken: list[tuple[int, str]]  # (row position, reason) of the samples that could not be measured


def measured(pictures: list[Picture], broken: list[tuple[int, str]]) -> Measured:
    """Statistics and hashes of pictures, those of one size measured together (`measures.measure`)."""
    values = np.full((len(pictures), len(STATS)), np.nan)
    values[:, 0] = [p.width for p in pictures]
    values[:, 1] = [p.height for p in pictures]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, picture in enumerate(pictures):
        by_shape.setdefault(picture.ycbcr.shape, []).append(i)
    for at in by_shape.values():
        values[at, 2:] = measure(np.stack([pictures[i].ycbcr for i in at]))
    grids = [p.grid for p in pictures]
    return Measured(
        rows=np.array([p.row for p in pictures], dtype=np.int64),
        values=values,
        hashes=dct_hashes(np.stack(grids) if grids else np.zeros((0, SMALL, SMALL), np.uint8)),
        broken=broken,
    )


def _analysis_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, ANALYSIS / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def image_picture(path: Path, row: int = 0) -> Picture:
    """One image file at analysis size; raises whatever the decoder raises for a broken file."""
    with Image.open(path) as im:
        width, height = im.size
        if im.getexif().get(_EXIF_ORIENTATION, 1) in _QUARTER_TURNS:
            width, height = height, width
        if im.format == "JPEG" and im.mode == "RGB":
            im.draft("YCbCr", _analysis_size(*im.size))  # the DCT scale that still covers the analysis size
        shown = exif_upright(im)
        shown.load()
        if shown.mode != "YCbCr":
            shown = shown.convert("RGB").convert("YCbCr")
        size = _analysis_size(*shown.size)
        small = shown if size == shown.size else shown.resize(size, Image.Resampling.BOX)  # (Pillow would copy it)
        return Picture.of(row, small, width, height)


def video_pictures(path: Path, rows: dict[int, int]) -> Iterator[tuple[int, Picture | None, str]]:
    """(row, picture or None, reason) for the wanted frames (frame number -> row), from one sequential decode."""
    wanted = dict(rows)
    reason = "frame not found in the video (it has fewer frames than were indexed)"
    import av  # PyAV (0.1 s to import): only for videos, as in dataset.video

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        size = _analysis_size(width, height)
        for number, image in iter_frames(path, size=size, keep=set(wanted)):
            row = wanted.pop(number, None)
            if row is not None:
                yield row, Picture.of(row, image.convert("YCbCr"), width, height), ""
            if not wanted:
                break
    except Exception as exc:  # noqa: BLE001 - any decoder failure: the frames not decoded are broken
        reason = f"video decoding failed: {exception_line(exc)}"
    for number in sorted(wanted):
        yield wanted[number], None, reason


def _pictures(
    data_dir: Path, source: str, video: bool, rows: list[tuple[int, int]]
) -> Iterator[tuple[int, Picture | None, str]]:
    """(row, picture or None, reason) for one file's rows, given as (row, frame number)."""
    path = Path(data_dir) / source
    if video:
        yield from video_pictures(path, {frame: row for row, frame in rows})
        return
    ((row, _),) = rows
    try:
        yield row, image_picture(path, row), ""
    except Exception as exc:  # noqa: BLE001 - any decoder failure makes this one sample broken
        yield row, None, exception_line(exc)


def _files(samples: pd.DataFrame) -> list[tuple[str, bool, list[tuple[int, int]]]]:
    """One task per file: (source, is a video, [(row position, frame number)]), in first-seen order."""
    frames = samples["frame"] if "frame" in samples else pd.Series(0, index=samples.index)
    files: dict[str, tuple[str, bool, list[tuple[int, int]]]] = {}
    for row, (source, kind, frame) in enumerate(zip(samples["source"], samples["kind"], frames, strict=True)):
        task = files.setdefault(str(source), (str(source), str(kind) == "video", []))
        task[2].append((row, 0 if pd.isna(frame) else int(frame)))
    return list(files.values())


def _tasks(data_dir: Path, tasks: list[tuple[str, bool, list[tuple[int, int]]]]) -> list[Measured]:
    """The pictures of several files measured, GROUP at a time: one round trip to a worker process. Its images are
    read ahead at once: files not in the page cache then arrive while the first are measured (40,000 64x48 JPEGs
    evicted first, 2 processes: 13.9-14.6 s without, 9.9-10.1 s with; 9.5-9.9 s cached)."""
    read_ahead([str(Path(data_dir) / source) for source, video, _ in tasks if not video])
    parts: list[Measured] = []
    pictures: list[Picture] = []
    broken: list[tuple[int, str]] = []
    for task in tasks:
        for row, picture, reason in _pictures(data_dir, *task):
            if picture is None:
                broken.append((row, reason or "could not be decoded"))
            else:
                pictures.append(picture)
            if len(pictures) == GROUP:
                parts.append(measured(pictures, broken))
                pictures, broken = [], []
    return [*parts, measured(pictures, broken)]


def _results(files: list, data_dir: Path, workers: int | None) -> Iterator[list[Measured]]:
    """`_tasks`' results chunk by chunk: many files in worker processes (chunks of CHUNK images, a video each),
    else each file in one of `workers` threads."""
    cores = usable_cores()
    if workers is None and len(files) >= PROCESSES_FROM and cores > 1:
        images = [task for task in files if not task[1]]
        chunks = [[task] for task in files if task[1]]  # a video is a task of its own: they are long
        chunks += [images[start : start + CHUNK] for start in range(0, len(images), CHUNK)]
        processes = min(cores, MAX_PROCESSES)
    else:
        chunks, processes = [[task] for task in files], 1
    threads = workers or min(4, cores)
    yield from results_in_workers(partial(_tasks, data_dir), chunks, processes, threads, "picture statistics")


def compute_stats(samples: pd.DataFrame, data_dir: Path, workers: int | None = None) -> pd.DataFrame:
    """One row per sample (the input's order): KEY_COLUMNS, STATS, `hash` (8 bytes) and `broken` (reason, or '').

    `workers` asks for that many threads; by default the pool follows the number of files and cores."""
    n = len(samples)
    values = np.full((n, len(STATS)), np.nan)
    hashes = np.zeros((n, BITS // 8), dtype=np.uint8)
    broken = [""] * n
    for parts in _results(_files(samples), Path(data_dir), workers):
        for part in parts:
            values[part.rows], hashes[part.rows] = part.values, part.hashes
            for row, reason in part.broken:
                broken[row] = reason
    out = samples[KEY_COLUMNS].reset_index(drop=True).copy()
    out[STATS] = values
    packed, size = hashes.tobytes(), BITS // 8
    return out.assign(hash=[packed[i : i + size] for i in range(0, len(packed), size)], broken=broken)


class StatsCache:
    """The statistics of earlier runs, keyed by (source, size, mtime_ns, filename): a changed file is new."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> pd.DataFrame:
        if not self.path.is_file():
            return pd.DataFrame(columns=CACHED)
        try:
            with np.load(self.path, allow_pickle=False) as data:
                version = int(data["version"])
                if version not in (1, CACHE_VERSION):
                    return pd.DataFrame(columns=CACHED)
                table = pd.DataFrame({c: data[c] for c in ["size", "mtime_ns", *STATS]})
                for column in TEXT:  # version 1: unicode arrays, compressed
                    table[column] = split_text(data[column], len(table)) if version == CACHE_VERSION else data[column]
                table["hash"] = [bytes(h) for h in data["hash"]]
                return table.loc[:, CACHED]
        except (OSError, KeyError, ValueError) as exc:
            raise CurationError(f"{self.path}: unreadable statistics cache ({exc}); delete it to start over") from None

    def save(self, table: pd.DataFrame) -> None:
        """Plain, not compressed: at a million samples compressing took 7.5 s a run."""
        arrays = {c: joined_text(table[c].to_numpy()) for c in TEXT}
        arrays |= {c: table[c].to_numpy(dtype=np.int64) for c in ("size", "mtime_ns")}
        arrays |= {c: table[c].to_numpy(dtype=np.float64) for c in STATS}
        hashes = np.frombuffer(b"".join(table["hash"]), dtype=np.uint8).reshape(-1, BITS // 8)
        save_state(self.path, CACHE_VERSION, hash=hashes, **arrays)


def sample_stats(
    samples: pd.DataFrame, data_dir: Path, cache: StatsCache | None = None, workers: int | None = None
) -> tuple[pd.DataFrame, int]:
    """Statistics of every sample (input order), and how many were computed in this call (the rest: cache)."""
    samples = samples.reset_index(drop=True)
    if cache is None:
        return compute_stats(samples, data_dir, workers), len(samples)
    old = cache.load()
    at = matching_rows(old, samples)
    hit = at >= 0
    parts = [old.iloc[at[hit]].loc[:, CACHED].set_axis(np.flatnonzero(hit))] if hit.any() else []
    if (~hit).any():
        fresh = compute_stats(samples.loc[~hit], data_dir, workers)
        parts.append(fresh.loc[:, CACHED].set_axis(np.flatnonzero(~hit)))
    table = pd.concat(parts).sort_index().reset_index(drop=True) if parts else pd.DataFrame(columns=CACHED)
    table = table.astype({c: np.float64 for c in STATS} | {"size": np.int64, "mtime_ns": np.int64})
    cache.save(table)
    return table, int((~hit).sum())
