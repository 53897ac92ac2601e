"""Decoding samples into the model's pixels, in worker threads that feed a bounded queue.

Pillow and PyAV release the GIL while decoding (torch and OpenVINO while computing), so the network rarely waits, and
memory is bounded whatever the dataset or video length (`local.queue_depth`: two batches on a CPU, 64 MiB of pixels
beside a GPU). How decoding shares the machine with the network is the model's plan (`runtime.plan_threads`): on a
CPU the decode threads run beside the network's threads at a lower priority, so they take the cores kept for them
and fill whatever time the network leaves idle without preempting its threads mid-layer; on a GPU every core
decodes, at normal priority (the Python between Pillow's calls holds the GIL: on 16 cores threads stop scaling at
about 8). A video is decoded once, in order (PyAV), never by seeking frame by frame and never to disk.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lightly_assets.dataset.orientation import exif_upright
from lightly_assets.dataset.video import iter_frames
from lightly_assets.embedding.decode_pool import CHUNK, PhotoPool
from lightly_assets.embedding.errors import EmbeddingError
from lightly_assets.embedding.executor import DecodeOptions
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.runtime import lower_this_thread_priority
from lightly_assets.errors import exception_line

if TYPE_CHECKING:  # a worker process that only decodes photos (decode_pool) does not load pandas
    import pandas as pd

# JPEG draft decoding is asked for this many times the input size, so the final bilinear resize still
# averages over several pixels. Pillow keeps both sides at least that large: at 64 px a 640x480 JPEG is decoded at
# 320x240, an 800x600 one at 200x150. Against full decoding, on 300 made and 300 real 640x480 JPEGs: mean pixel
# difference 0.22 and 0.19 (of 255), embedding cosine >= 0.99998 (fp32); the real ones decode in 1.05 ms, not 1.7-2.0.
DRAFT_FACTOR = 2


def load_image(path: Path, size: int | Preprocessing, draft: bool = True, upright: bool = True) -> np.ndarray:
    """RGB pixels as the model takes them; an int `size` is lightly-embed's `pil_loader` + `Resize((size, size))`.

    With `draft`, JPEGs are decoded at a reduced DCT scale (still at least DRAFT_FACTOR x the size the model's
    resize starts from), which is several times cheaper for large photos and nearly identical after the resize.
    `upright` turns the photo by its EXIF orientation first, as viewers show it (lightly-embed does not:
    `upright=False`).
    """
    prep = as_preprocessing(size)
    with Image.open(path) as im:
        if draft and im.format == "JPEG":
            w, h = prep.draft_size()
            im.draft("RGB", (w * DRAFT_FACTOR, h * DRAFT_FACTOR))
        shown = exif_upright(im) if upright else im
        rgb = shown.convert("RGB") if shown.mode != "RGB" else shown
        rgb.load()
        return prep.apply(rgb)


def as_preprocessing(size: int | Preprocessing) -> Preprocessing:
    """lightly-embed's preprocessing for a plain size; a model's own otherwise."""
    return size if isinstance(size, Preprocessing) else Preprocessing.stretch(size)


@dataclass
class _Task:
    """One file to decode: an image (one row) or a video (the rows of the frames still needed)."""

    source: str
    rows: dict[int, int]  # frame number (0 for an image) -> row position in frame_index
    video: bool


def tasks(frame_index: pd.DataFrame, todo: np.ndarray) -> list[_Task]:
    tasks: dict[str, _Task] = {}
    kinds = frame_index["kind"].to_numpy()
    sources = frame_index["source"].to_numpy()
    frames = frame_index["frame"].to_numpy(dtype=object, na_value=None)
    for row in todo.tolist():
        source = str(sources[row])
        if kinds[row] == "video":
            if frames[row] is None:
                raise EmbeddingError(f"frame_index row {row} ({source}): a video sample without a frame number")
            task = tasks.setdefault(source, _Task(source, {}, video=True))
            if int(frames[row]) in task.rows:
                raise EmbeddingError(f"frame_index lists frame {frames[row]} of {source} twice")
            task.rows[int(frames[row])] = row
        else:
            tasks[f"{source}\0{row}"] = _Task(source, {0: row}, video=False)
    return list(tasks.values())


_DONE = object()
Item = tuple[int, np.ndarray | None, str | None]  # (row, pixels or None, reason when unreadable)


def _decode(task: _Task, data_dir: Path, size: Preprocessing, decode: DecodeOptions) -> Generator[Item, None, None]:
    path = data_dir / task.source
    upright = decode.orientation == "upright"
    if not task.video:
        (row,) = task.rows.values()
        try:
            yield row, load_image(path, size, decode.draft, upright), None
        except Exception as exc:  # noqa: BLE001 - any decoder failure makes this one sample unreadable
            yield row, None, exception_line(exc)
        return
    yield from decode_video(path, dict(task.rows), size, upright)


def decode_video(path: Path, wanted: dict[int, int], size: Preprocessing, upright: bool = True) -> Iterator[Item]:
    """Frames decoded once, in order; frames the video lacks or that follow a decode error are unreadable."""
    reason = "frame not found in the video (it has fewer frames than were indexed)"
    frames: Iterator | None = None
    try:
        scaled = (size.width, size.height) if size.mode == "stretch" else None  # swscale resizes, far cheaper
        # Turned before the model's crop, if any; frames not wanted (subsampled, or cached) are not converted.
        frames = iter_frames(path, size=scaled, upright=upright, keep=set(wanted))
        for number, image in frames:
            row = wanted.pop(number, None)
            if row is not None:
                yield row, _frame_pixels(image, size), None
            if not wanted:
                break
    except Exception as exc:  # noqa: BLE001 - VideoError or a decoder error: keep the frames already decoded
        reason = f"video decoding failed: {exception_line(exc)}"
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    for row in wanted.values():
        yield row, None, reason


def decode_photos(chunk: list[_Task], data_dir: Path, size: Preprocessing, decode: DecodeOptions) -> list[Item]:
    """A chunk of photos decoded together (in a `PhotoPool` process: one round trip for the chunk)."""
    return [item for task in chunk for item in _decode(task, data_dir, size, decode)]


def _in_chunks(tasks: list[_Task]) -> list[_Task | list[_Task]]:
    """Photos in chunks of up to CHUNK, in order, for the processes; each video a unit of its own."""
    units: list[_Task | list[_Task]] = []
    for task in tasks:
        if task.video:
            units.append(task)
        elif units and isinstance(units[-1], list) and len(units[-1]) < CHUNK:
            units[-1].append(task)
        else:
            units.append([task])
    return units


def _frame_pixels(image: Image.Image, size: Preprocessing) -> np.ndarray:
    return size.apply(image)


class Decoder:
    """Worker threads that decode tasks into a bounded queue; `stop()` lets them exit if the consumer fails."""

    def __init__(
        self,
        tasks: list[_Task],
        data_dir: Path,
        size: Preprocessing,
        decode: DecodeOptions,
        workers: int,
        depth: int,
        low_priority: bool = False,
        processes: int = 0,
    ) -> None:
        self.out: queue.Queue = queue.Queue(maxsize=depth)
        self._low_priority = low_priority
        self._pool = PhotoPool(processes, decode_photos) if processes else None
        self.processes = processes if self._pool else 0
        units = _in_chunks(tasks) if self._pool else tasks
        self._tasks: queue.SimpleQueue[_Task | list[_Task]] = queue.SimpleQueue()
        for unit in units:
            self._tasks.put(unit)
        self._stop = threading.Event()
        self.n_workers = max(1, min(workers, len(units)))
        args = (data_dir, size, decode)
        self._threads = [
            threading.Thread(target=self._work, args=args, name=f"embed-decode-{i}", daemon=True)
            for i in range(self.n_workers)
        ]
        for t in self._threads:
            t.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, data_dir: Path, size: Preprocessing, decode: DecodeOptions) -> None:
        if self._low_priority:
            lower_this_thread_priority()  # this thread only (and the codec threads it starts)
        try:
            while not self._stop.is_set():
                try:
                    task = self._tasks.get_nowait()
                except queue.Empty:
                    break
                items = self._items(task, data_dir, size, decode)
                for item in items:
                    if not self._put(item):
                        getattr(items, "close", lambda: None)()
                        return
        finally:
            self._put(_DONE)

    def _items(
        self, unit: _Task | list[_Task], data_dir: Path, size: Preprocessing, decode: DecodeOptions
    ) -> Iterator[Item]:
        if isinstance(unit, _Task):
            return _decode(unit, data_dir, size, decode)
        assert self._pool is not None  # photos come in chunks only when a pool decodes them (`_in_chunks`)
        return iter(self._pool.decode(unit, data_dir, size, decode))  # a process decodes, this thread waits

    def items(self) -> Iterator[Item]:
        done = 0
        while done < self.n_workers:
            item = self.out.get()
            if item is _DONE:
                done += 1
                continue
            yield item

    def stop(self) -> None:
        self._stop.set()
        if self._pool is not None:
            self._pool.close()
        for t in self._threads:
            t.join(timeout=5)
