"""`LocalExecutor`: the decode-and-embed step in this process, decoder threads feeding the model batch after batch."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator

import numpy as np

from lightly_assets.embedding.decode import Decoder, tasks
from lightly_assets.embedding.embedder import Embedder
from lightly_assets.embedding.executor import EmbedJob, JobResult, Sink


class LocalExecutor:
    """The decode-and-embed step in this process: decoder threads feeding the model, batch after batch."""

    def describe(self) -> str:
        return "local"

    def run(self, job: EmbedJob, sink: Sink) -> JobResult:
        decoder = Decoder(
            tasks(job.samples, np.arange(len(job.samples))),
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
    """Consumes decoded samples in arrival order; each batch's vectors go straight to the sink.

    Batches go to `Embedder.embed_batches`, which may run the next one while this one is still in the network
    (OpenVINO's two streams), so each batch has its own array and its rows wait in `pending` until its vectors come.
    """

    def __init__(self, model: Embedder, batch_size: int, sink: Sink) -> None:
        self.model, self.sink, self.batch_size = model, sink, batch_size
        self.pending: deque[list[int]] = deque()
        self.first_batch_at: float | None = None

    def embed_all(self, decoder: Decoder) -> None:
        try:
            for vectors in self.model.embed_batches(self._batches(decoder)):
                self.flush(vectors)
        finally:
            decoder.stop()

    def _batches(self, decoder: Decoder) -> Iterator[np.ndarray]:
        height, width = self.model.prep.shape
        batch = np.empty((self.batch_size, height, width, 3), dtype=np.uint8)
        rows: list[int] = []
        for row, pixels, reason in decoder.items():
            if pixels is None:
                self.sink.unreadable(row, reason or "unreadable")
                continue
            batch[len(rows)] = pixels
            rows.append(row)
            if len(rows) == self.batch_size:
                self.pending.append(rows)
                yield batch
                batch, rows = np.empty_like(batch), []
        if rows:
            self.pending.append(rows)
            yield batch[: len(rows)]

    def flush(self, vectors: np.ndarray) -> None:
        """The vectors of the oldest batch in flight, to the sink."""
        rows = self.pending.popleft()
        if self.first_batch_at is None:
            self.first_batch_at = time.time()
        self.sink.vectors(np.asarray(rows, dtype=np.int64), vectors)
