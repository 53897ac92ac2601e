"""Per-sample picture statistics (brightness, colour, information, sharpness, shape) and the perceptual hash,
from one decode at ANALYSIS pixels, cached by file so that a re-run decodes only new or changed files.

Why its own decode: judging blur needs more pixels than the network's 64x64 input. A JPEG is decoded at a
reduced DCT scale (Pillow's `draft`) straight to YCbCr, so the luminance is the Y plane and the colour test reads
Cb/Cr, with no colour conversion; then boxed down to ANALYSIS on the long side, so that the sharpness of a 640-px
and of a 4000-px photo are measured at the same scale. Video frames come from one sequential PyAV decode,
scaled by swscale. It is not shared with the embedding step: that one decodes at the network's scale (a JPEG
draft of at least 128 px for the default 64 px input, not 256), and on small files the time here is the statistics,
not the decode. Many files are measured in worker processes (PROCESSES_FROM); bench_scale measures the step.

Statistics (all in [0, 1] except the sizes):
- `lum_p05`, `lum_p95`: 5th / 95th percentile of the luminance (dark: even the bright parts are dark; light:
  even the dark parts are bright);
- `chroma_p99`: 99th percentile of max(|Cb - 0.5|, |Cr - 0.5|) (greyscale: no pixel has colour);
- `entropy`: Shannon entropy of the 256-bin luminance histogram / 8 bits (low information: few distinct tones);
- `sharpness`: std of the Laplacian / std of the luminance at ANALYSIS px (blur: little high-frequency detail
  relative to the picture's contrast; independent of brightness and contrast);
- `width`, `height`: the picture as viewers show it (EXIF orientation applied), before any scaling.
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
from lightly_assets.curation.phash import BITS, SMALL, dct_hashes, hash_grid
from lightly_assets.curation.state_file import save_state
from lightly_assets.dataset.contents import read_ahead
from lightly_assets.dataset.keys import KEY_COLUMNS, joined_text, matching_rows, split_text
from lightly_assets.dataset.orientation import exif_upright
from lightly_assets.dataset.video import iter_frames
from lightly_assets.errors import exception_line
from lightly_assets.workers import results_in_workers, usable_cores

ANALYSIS = 256  # long side, in pixels, that statistics are measured at
STATS = ["width", "height", "lum_p05", "lum_p95", "chroma_p99", "entropy", "sharpness"]
CACHED = pd.Index([*KEY_COLUMNS, *STATS, "hash", "broken"])  # the columns of the statistics cache, in order
CACHE_VERSION = 2  # 2: text columns NUL-joined, not compressed; 1 is still read
TEXT = ("source", "filename", "broken")  # the text columns of the cache
_EXIF_ORIENTATION, _QUARTER_TURNS = 0x0112, (5, 6, 7, 8)  # EXIF: transposed or turned by 90 degrees
FLAT = 1.0  # luminance std (0..255) below which a picture has no structure to be sharp or blurry
# From this many files on, the statistics are computed in worker processes, one per core. Per file they are mostly
# small numpy calls that hold the GIL, so threads scale badly (64x48 JPEGs, 2 cores: 4 threads 0.88 ms a file, one
# thread 0.57 ms, two processes 0.29 ms); a spawned worker costs ~1 s to start, which pays from a few thousand on.
PROCESSES_FROM = 4096
MAX_PROCESSES = 8  # each holds its own numpy, Pillow and SciPy (~150 MB)
CHUNK = 256  # files per task of a worker process


class Measured(NamedTuple):
    """One task's results as arrays: a worker process sends a few arrays back, not a dict per file."""

    rows: np.ndarray  # (k,) int64: the row positions of the samples measured
    values: np.ndarray  # (k, len(STATS)) float64
    hashes: np.ndarray  # (k, 8) uint8: their perceptual hashes
    broken: list[tuple[int, str]]  # (row position, reason) of the samples that could not be measured


def picture_stats(ycbcr: np.ndarray, width: int, height: int) -> dict:
    """The statistics of one picture (an (h, w, 3) uint8 YCbCr array at analysis size) and the `grid` its hash is
    taken of (hashed with the others of its task, by `_measured`)."""
    y = ycbcr[..., 0]
    hist = np.bincount(y.reshape(-1), minlength=256).astype(np.float64)
    cdf = np.cumsum(hist) / max(hist.sum(), 1.0)
    p = hist[hist > 0] / max(hist.sum(), 1.0)
    chroma = np.maximum(np.abs(ycbcr[..., 1].astype(np.int16) - 128), np.abs(ycbcr[..., 2].astype(np.int16) - 128))
    chroma_cdf = np.cumsum(np.bincount(chroma.reshape(-1), minlength=129)) / max(chroma.size, 1)
    luminance = y.astype(np.float32)
    spread = float(luminance.std())
    sharp = float(laplacian(y).std() / spread) if spread >= FLAT and min(y.shape) >= 3 else float("nan")
    return {
        "width": int(width),
        "height": int(height),
        "lum_p05": float(np.searchsorted(cdf, 0.05)) / 255.0,
        "lum_p95": float(np.searchsorted(cdf, 0.95)) / 255.0,
        "chroma_p99": float(np.searchsorted(chroma_cdf, 0.99)) / 255.0,
        "entropy": float(-(p * np.log2(p)).sum() / 8.0),
        "sharpness": sharp,
        "grid": hash_grid(y),
    }


def laplacian(y: np.ndarray) -> np.ndarray:
    """The Laplacian of a uint8 picture, edges repeated (float32): the values of `scipy.ndimage.laplace` on its
    float32 copy (sums of small integers are exact either way), 7x faster at 256x192 px (78 against 557 us)."""
    y = y.astype(np.int16)
    out = y * np.int16(-4)
    out[1:] += y[:-1]
    out[:1] += y[:1]
    out[:-1] += y[1:]
    out[-1:] += y[-1:]
    out[:, 1:] += y[:, :-1]
    out[:, :1] += y[:, :1]
    out[:, :-1] += y[:, 1:]
    out[:, -1:] += y[:, -1:]
    return out.astype(np.float32)


def _analysis_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, ANALYSIS / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def image_stats(path: Path) -> dict:
    """Statistics of one image file; raises whatever the decoder raises for a broken file."""
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
        small = shown.resize(_analysis_size(*shown.size), Image.Resampling.BOX)
        return picture_stats(np.asarray(small), width, height)


def video_stats(path: Path, frames: set[int]) -> Iterator[tuple[int, dict | None, str]]:
    """(frame number, statistics or None, reason) for the wanted frames, from one sequential decode."""
    wanted = set(frames)
    reason = "frame not found in the video (it has fewer frames than were indexed)"
    import av  # PyAV (0.1 s to import): only for videos, as in dataset.video

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        size = _analysis_size(width, height)
        for number, image in iter_frames(path, size=size, keep=wanted):
            if number in wanted:
                wanted.discard(number)
                yield number, picture_stats(np.asarray(image.convert("YCbCr")), width, height), ""
            if not wanted:
                break
    except Exception as exc:  # noqa: BLE001 - any decoder failure: the frames not decoded are broken
        reason = f"video decoding failed: {exception_line(exc)}"
    for number in sorted(wanted):
        yield number, None, reason


def _task(data_dir: Path, source: str, video: bool, rows: list[tuple[int, int]]) -> list[tuple[int, dict | None, str]]:
    """(row position, statistics or None, reason) for one file's rows, given as (row, frame number)."""
    path = Path(data_dir) / source
    if not video:
        ((row, _),) = rows
        try:
            return [(row, image_stats(path), "")]
        except Exception as exc:  # noqa: BLE001 - any decoder failure makes this one sample broken
            return [(row, None, exception_line(exc))]
    by_frame = dict((frame, row) for row, frame in rows)
    return [(by_frame[n], stats, why) for n, stats, why in video_stats(path, set(by_frame))]


def _files(samples: pd.DataFrame) -> list[tuple[str, bool, list[tuple[int, int]]]]:
    """One task per file: (source, is a video, [(row position, frame number)]), in first-seen order."""
    frames = samples["frame"] if "frame" in samples else pd.Series(0, index=samples.index)
    files: dict[str, tuple[str, bool, list[tuple[int, int]]]] = {}
    for row, (source, kind, frame) in enumerate(zip(samples["source"], samples["kind"], frames, strict=True)):
        task = files.setdefault(str(source), (str(source), str(kind) == "video", []))
        task[2].append((row, 0 if pd.isna(frame) else int(frame)))
    return list(files.values())


def _tasks(data_dir: Path, tasks: list[tuple[str, bool, list[tuple[int, int]]]]) -> Measured:
    """`_task` for several files: one round trip to a worker process. Its images are read ahead at once: files not
    in the page cache then arrive while the first are measured (40,000 64x48 JPEGs evicted first, 2 processes:
    13.9-14.6 s without, 9.9-10.1 s with; 9.5-9.9 s cached)."""
    read_ahead([str(Path(data_dir) / source) for source, video, _ in tasks if not video])
    return _measured([result for task in tasks for result in _task(data_dir, *task)])


def _measured(results: list[tuple[int, dict | None, str]]) -> Measured:
    """`_task`'s (row, statistics or None, reason) as arrays, the pictures' hashes computed together."""
    kept = [(row, stats) for row, stats, _ in results if stats is not None]
    values = np.array([[stats[column] for column in STATS] for _, stats in kept], dtype=np.float64)
    grids = np.stack([stats["grid"] for _, stats in kept]) if kept else np.zeros((0, SMALL, SMALL), np.uint8)
    return Measured(
        rows=np.array([row for row, _ in kept], dtype=np.int64),
        values=values.reshape(-1, len(STATS)),
        hashes=dct_hashes(grids),
        broken=[(row, reason or "could not be decoded") for row, stats, reason in results if stats is None],
    )


def _results(files: list, data_dir: Path, workers: int | None) -> Iterator[Measured]:
    """`_task`'s results chunk by chunk: many files in worker processes (chunks of CHUNK images, a video each),
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
    for part in _results(_files(samples), Path(data_dir), workers):
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
