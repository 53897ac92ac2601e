"""The data path of `embed_samples`: reuse what did not change, hand the rest to an executor, collect the vectors.

Rows of the result follow `frame_index`; a sample that cannot be decoded is listed in `unreadable` with the reason
and the others go on. Decoding is `decode.py`'s, running the model `local.py`'s (or Ray's, `distributed.py`), the
rule that a video is published whole or not at all `whole_videos.py`'s, the vector cache `cache.py`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lightly_assets import columns
from lightly_assets.dataset.keys import key_table
from lightly_assets.dataset.orientation import check_orientation
from lightly_assets.embedding.cache import Cached, Checkpoint, EmbeddingCache
from lightly_assets.embedding.decode import DRAFT_FACTOR
from lightly_assets.embedding.embedder import Embedder
from lightly_assets.embedding.errors import EmbeddingError
from lightly_assets.embedding.executor import DecodeOptions, EmbedJob, Executor, JobResult
from lightly_assets.embedding.local import LocalExecutor
from lightly_assets.embedding.whole_videos import drop_broken_videos

REQUIRED_COLUMNS = ("filename", "source", "kind", "frame", "label", "size", "mtime_ns")  # of frame_index


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
    decode_processes: int = 0  # processes that decoded photos beside a GPU (`decode_pool`; 0: the threads did)
    nodes: frozenset[str] = frozenset()  # the Ray nodes that embedded (empty locally)
    model: str = ""  # the model's description, set by the `embeddings` asset for what comes downstream
    space: str | None = None  # its LightlyStudio embedding space (publish/studio/embedder.space_for), likewise


def _cache_fingerprint(model: Embedder, decode: DecodeOptions) -> str:
    return f"{model.fingerprint}|draft={int(decode.draft) * DRAFT_FACTOR}|orientation={decode.orientation}"


@dataclass(frozen=True)
class EmbedOptions:
    """How `embed_samples` runs: `batch_size` samples per forward pass; `workers` decode threads (None: the model's
    `decode_workers`, sized for its device and threads); `draft` JPEG decoding (see `decode.DRAFT_FACTOR`);
    `orientation` `upright` embeds photos and frames as viewers show them (EXIF orientation, display rotation),
    `raw` the stored pixels, as lightly-embed does."""

    batch_size: int = 64
    workers: int | None = None
    draft: bool = True
    orientation: str = "upright"


def embed_samples(
    frame_index: pd.DataFrame,
    data_dir: Path,
    model: Embedder,
    options: EmbedOptions | None = None,
    cache: EmbeddingCache | None = None,
    progress: Callable[[int, int], None] | None = None,
    executor: Executor | None = None,
) -> EmbedResult:
    """Embed every sample of `frame_index` (images and video frames) with `model`, reusing cached vectors.

    The rows the cache lacks go to `executor` as one `EmbedJob` (default `LocalExecutor()`, this process;
    `distributed.RayExecutor` embeds them on a Ray cluster); `progress(done, total)` follows each batch.
    """
    columns.require(frame_index, REQUIRED_COLUMNS, "frame_index")
    options = options or EmbedOptions()
    batch_size, workers, draft, orientation = options.batch_size, options.workers, options.draft, options.orientation
    if batch_size < 1:
        raise EmbeddingError(f"batch_size must be at least 1, got {batch_size}")
    start = time.perf_counter()
    n = len(frame_index)
    keys = key_table(frame_index)
    decode = DecodeOptions(draft=draft, orientation=check_orientation(orientation))
    fingerprint = _cache_fingerprint(model, decode)
    matrix = np.zeros((n, model.dim), dtype=np.float32)
    done = np.zeros(n, dtype=bool)
    cached = cache.load(fingerprint) if cache is not None else Cached.empty()
    if cached.vectors.ndim == 2 and cached.vectors.shape[1] == model.dim:
        rows = cached.rows_for(keys)
        done = rows >= 0
        matrix[done] = cached.vectors[rows[done]]
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
    drop_broken_videos(frame_index, done, unreadable)
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
        decode_processes=outcome.decode_processes,
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
