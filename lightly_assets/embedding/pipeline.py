"""The data path: decode samples in parallel, batch them, embed them, and reuse what did not change.

Decoding runs in worker threads (Pillow and PyAV release the GIL while decoding, torch while computing)
that feed a bounded queue, so the model rarely waits and memory is bounded by a few batches whatever the
dataset or video length. How decoding shares the machine with the network is the model's plan
(`runtime.plan_threads`): on a CPU the decode threads run beside the network's threads at a lower
priority, so they take the cores kept for them and fill whatever time the network leaves idle without
preempting its threads mid-layer (which makes all of them wait at the layer's end); on a GPU every core
decodes, at normal priority.
Rows of the result follow `frame_index`; a sample that cannot be decoded is listed in `unreadable` with
the reason and the others go on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image

from lightly_assets import columns
from lightly_assets.dataset.orientation import check_orientation, exif_upright
from lightly_assets.embedding.cache import Checkpoint, EmbeddingCache, Key
from lightly_assets.embedding.executor import DecodeOptions, EmbedJob, Executor, JobResult, Sink
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.runtime import lower_this_thread_priority
from lightly_assets.errors import LightlyAssetsError, exception_line

if TYPE_CHECKING:  # a model served from the OpenVINO cache runs without torch, which model.py imports
    from lightly_assets.embedding.model import LoadedModel

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("filename", "source", "kind", "frame", "label", "size", "mtime_ns")  # of frame_index
# JPEG draft decoding is asked for this many times the input size, so the final bilinear resize still
# averages over several pixels. Measured on 640x480 JPEGs at 64 px (decoded at 160x120): mean pixel
# difference 0.23/255 and embedding cosine >= 0.99999 against full decoding, decode 1.45x faster.
DRAFT_FACTOR = 2


class EmbeddingError(LightlyAssetsError):
    """The sample table or the cache cannot be used; names what and why."""


@dataclass
class EmbedResult:
    """Embeddings of the samples that could be read, in `frame_index` order.

    `indices` are the positions of those rows in `frame_index`; `samples_per_s` counts the samples that
    were embedded in this call (not the ones reused from the cache) over the seconds spent embedding them
    (0 when everything came from the cache). `first_batch_at` is the wall-clock time (`time.time()`) the
    first batch was embedded, for start-up measurements; None when nothing was embedded.
    """

    matrix: np.ndarray
    filenames: list[str]
    labels: list[int]
    unreadable: list[tuple[str, str]]
    reused: int
    seconds: float
    samples_per_s: float
    embedded: int = 0
    indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    first_batch_at: float | None = None
    workers: int = 0
    nodes: frozenset[str] = frozenset()  # the Ray nodes that embedded (empty locally)
    model: str = ""  # the model's description, set by the `embeddings` asset for what comes downstream
    space: str | None = None  # its LightlyStudio embedding space (publish/studio/embedder.space_for), likewise


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


def _cache_fingerprint(model: LoadedModel, decode: DecodeOptions) -> str:
    return f"{model.fingerprint}|draft={int(decode.draft) * DRAFT_FACTOR}|orientation={decode.orientation}"


def _keys(frame_index: pd.DataFrame) -> list[Key]:
    return [
        (str(s), int(n), int(m), str(f))
        for s, n, m, f in zip(
            frame_index["source"],
            frame_index["size"],
            frame_index["mtime_ns"],
            frame_index["filename"],
            strict=True,
        )
    ]


@dataclass
class _Task:
    """One file to decode: an image (one row) or a video (the rows of the frames still needed)."""

    source: str
    rows: dict[int, int]  # frame number (0 for an image) -> row position in frame_index
    video: bool


def _tasks(frame_index: pd.DataFrame, todo: np.ndarray) -> list[_Task]:
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


def _decode(task: _Task, data_dir: Path, size: Preprocessing, decode: DecodeOptions) -> Iterator[Item]:
    path = data_dir / task.source
    upright = decode.orientation == "upright"
    if not task.video:
        (row,) = task.rows.values()
        try:
            yield row, load_image(path, size, decode.draft, upright), None
        except Exception as exc:  # noqa: BLE001 - any decoder failure makes this one sample unreadable
            yield row, None, exception_line(exc)
        return
    yield from _decode_video(path, dict(task.rows), size, upright)


def _decode_video(path: Path, wanted: dict[int, int], size: Preprocessing, upright: bool = True) -> Iterator[Item]:
    """Frames decoded once, in order; frames the video lacks or that follow a decode error are unreadable."""
    from lightly_assets.dataset.video import iter_frames  # PyAV is imported only when a dataset has videos

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


def _frame_pixels(image: Image.Image, size: Preprocessing) -> np.ndarray:
    return size.apply(image)


class _Decoder:
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
    ) -> None:
        self.out: queue.Queue = queue.Queue(maxsize=depth)
        self._low_priority = low_priority
        self._tasks: queue.SimpleQueue[_Task] = queue.SimpleQueue()
        for task in tasks:
            self._tasks.put(task)
        self._stop = threading.Event()
        self.n_workers = max(1, min(workers, len(tasks)))
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
                items = _decode(task, data_dir, size, decode)
                for item in items:
                    if not self._put(item):
                        items.close()
                        return
        finally:
            self._put(_DONE)

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
        for t in self._threads:
            t.join(timeout=5)


def embed_samples(
    frame_index: pd.DataFrame,
    data_dir: Path,
    model: LoadedModel,
    batch_size: int = 64,
    workers: int | None = None,
    cache: EmbeddingCache | None = None,
    progress: Callable[[int, int], None] | None = None,
    draft: bool = True,
    executor: Executor | None = None,
    orientation: str = "upright",
) -> EmbedResult:
    """Embed every sample of `frame_index` (images and video frames) with `model`, reusing cached vectors.

    `workers` decode threads (default: the model's `decode_workers`, sized for its device and threads).
    The rows the cache lacks go to `executor` as one `EmbedJob` (default `LocalExecutor()`, this process;
    `distributed.RayExecutor` embeds them on a Ray cluster). `orientation` `upright` (default) embeds photos and
    frames as viewers show them (EXIF orientation, display rotation); `raw` embeds the stored pixels, as lightly-embed.
    """
    columns.require(frame_index, REQUIRED_COLUMNS, "frame_index")
    if batch_size < 1:
        raise EmbeddingError(f"batch_size must be at least 1, got {batch_size}")
    start = time.perf_counter()
    n = len(frame_index)
    keys = _keys(frame_index)
    decode = DecodeOptions(draft=draft, orientation=check_orientation(orientation))
    fingerprint = _cache_fingerprint(model, decode)
    matrix = np.zeros((n, model.dim), dtype=np.float32)
    done = np.zeros(n, dtype=bool)
    cached = cache.load(fingerprint) if cache is not None else {}
    for row, key in enumerate(keys):
        vector = cached.get(key)
        if vector is not None and vector.shape == (model.dim,):
            matrix[row] = vector
            done[row] = True
    reused = int(done.sum())
    unreadable: dict[int, str] = {}
    todo = np.flatnonzero(~done)
    if progress:
        progress(reused, n)
    checkpoint = Checkpoint(cache, fingerprint, keys, matrix, done) if cache is not None else None
    workers = workers or model.decode_workers
    outcome = JobResult()
    if len(todo):
        job = EmbedJob(
            frame_index.iloc[todo].reset_index(drop=True), Path(data_dir), model, batch_size, workers, decode
        )
        sink = _IntoRows(todo, matrix, done, unreadable, progress, checkpoint.maybe_save if checkpoint else None)
        outcome = (executor or LocalExecutor()).run(job, sink)
        sink.report_progress()
    embed_seconds = time.perf_counter() - start
    from_cache = np.ones(n, dtype=bool)
    from_cache[todo] = False
    _whole_videos(frame_index, done, unreadable)
    reused = int((done & from_cache).sum())  # a reused frame of a video left out is not reused
    if checkpoint is not None:
        checkpoint.save()
    seconds = time.perf_counter() - start
    ok = np.flatnonzero(done)
    embedded = len(ok) - reused
    names = frame_index["filename"].to_numpy()
    labels = frame_index["label"].to_numpy()
    return EmbedResult(
        matrix=np.ascontiguousarray(matrix[ok]),
        filenames=[str(names[i]) for i in ok.tolist()],
        labels=[int(labels[i]) for i in ok.tolist()],
        unreadable=[(str(names[i]), unreadable[i]) for i in sorted(unreadable)],
        reused=reused,
        seconds=seconds,
        samples_per_s=embedded / embed_seconds if embedded and embed_seconds > 0 else 0.0,
        embedded=embedded,
        indices=ok,
        first_batch_at=outcome.first_batch_at,
        workers=workers if len(todo) else 0,
        nodes=outcome.nodes,
    )


class _IntoRows:
    """The sink of `embed_samples`: job rows are `todo`'s positions; progress and the checkpoint follow each batch."""

    def __init__(
        self,
        todo: np.ndarray,
        matrix: np.ndarray,
        done: np.ndarray,
        unreadable: dict[int, str],
        progress: Callable[[int, int], None] | None,
        checkpoint: Callable[[], None] | None,
    ) -> None:
        self.todo, self.matrix, self.done, self.reasons = todo, matrix, done, unreadable
        self.progress, self.checkpoint = progress, checkpoint

    def vectors(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        rows = self.todo[rows]
        self.matrix[rows] = vectors
        self.done[rows] = True
        if self.checkpoint:
            self.checkpoint()  # decides itself whether to save the cache (so a kill loses little)
        self.report_progress()

    def unreadable(self, row: int, reason: str) -> None:
        self.reasons[int(self.todo[row])] = reason

    def report_progress(self) -> None:
        if self.progress:
            self.progress(int(self.done.sum()) + len(self.reasons), len(self.matrix))


def _whole_videos(frame_index: pd.DataFrame, done: np.ndarray, unreadable: dict[int, str]) -> None:
    """A video is embedded whole or not at all: one frame that cannot be decoded skips all its frames.

    Why: the targets take a video as one file. LightlyStudio decodes it itself and refuses it when its decoder
    fails part-way, and a bucket datasource holds the whole file; publishing the frames we could decode would
    put rows into the CSV that the target never shows. So the CSV, the checks and the target all leave it out,
    and every one of its frames is listed as unreadable with the first failure as the reason.
    """
    if not unreadable:
        return
    kinds = frame_index["kind"].to_numpy()
    sources = frame_index["source"].to_numpy()
    failed: dict[str, str] = {}
    for row in sorted(unreadable):
        if kinds[row] == "video":
            failed.setdefault(str(sources[row]), unreadable[row])
    if not failed:
        return
    for row in np.flatnonzero(np.isin(sources, list(failed))).tolist():
        if row not in unreadable:
            unreadable[row] = f"{failed[str(sources[row])]} (a video is published whole or not at all)"
        done[row] = False


class LocalExecutor:
    """The decode-and-embed step in this process: decoder threads feeding the model, batch after batch."""

    def describe(self) -> str:
        return "local"

    def run(self, job: EmbedJob, sink: Sink) -> JobResult:
        decoder = _Decoder(
            _tasks(job.samples, np.arange(len(job.samples))),
            job.data_dir,
            job.model.prep,
            job.decode,
            job.workers,
            depth=2 * job.batch_size,
            low_priority=job.model.low_priority_decode,
        )
        batches = _Batches(job.model, job.batch_size, sink)
        batches.embed_all(decoder)
        return JobResult(first_batch_at=batches.first_batch_at)


class _Batches:
    """Consumes decoded samples in arrival order; each batch's vectors go straight to the sink."""

    def __init__(self, model: LoadedModel, batch_size: int, sink: Sink) -> None:
        self.model, self.sink = model, sink
        height, width = model.prep.shape
        self.batch = np.empty((batch_size, height, width, 3), dtype=np.uint8)
        self.rows: list[int] = []
        self.first_batch_at: float | None = None

    def embed_all(self, decoder: _Decoder) -> None:
        try:
            for row, pixels, reason in decoder.items():
                if pixels is None:
                    self.sink.unreadable(row, reason or "unreadable")
                    continue
                self.batch[len(self.rows)] = pixels
                self.rows.append(row)
                if len(self.rows) == len(self.batch):
                    self.flush()
            self.flush()
        finally:
            decoder.stop()

    def flush(self) -> None:
        rows = self.rows
        if rows:
            vectors = self.model.embed(self.batch[: len(rows)])
            if self.first_batch_at is None:
                self.first_batch_at = time.time()
            self.sink.vectors(np.asarray(rows, dtype=np.int64), vectors)
            rows.clear()
