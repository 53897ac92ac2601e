"""`LocalExecutor`: the decode-and-embed step in this process, decoder threads feeding the model batch after batch.

The first batch is small (`FIRST_BATCH` samples), the others the job's batch size: the network starts as soon as a
few samples are decoded instead of waiting for a whole batch, and the first vectors (and the start-up figure) come
after a short forward pass: 64 samples of the default network take 0.1 s on 2 AMX cores but 0.65 s on 2 AVX-512
cores (4 samples: 0.14 CPU-s there, with OpenVINO's one-time set-up of a batch shape it has not seen). A vector
does not depend on the batch it was in (within cosine 0.9999 where bf16 kernels differ by batch shape).
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from lightly_assets.embedding.decode import Decoder, tasks
from lightly_assets.embedding.embedder import Embedder, InFlight
from lightly_assets.embedding.executor import EmbedJob, JobResult, Sink

FIRST_BATCH = 4  # samples in the first forward pass (at most the batch size)


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
    """Consumes decoded samples in arrival order; each batch's vectors go to the sink as soon as they are ready.

    Batches go into `Embedder.in_flight`, which keeps one in each OpenVINO stream while the next is filled, so the
    rows of each batch wait in `pending` until its vectors come back (checked after every decoded sample). The
    small first batch and the last one are split between the streams: the first vectors come as soon as with one
    stream of all the threads, and no stream idles at the end.
    """

    def __init__(self, model: Embedder, batch_size: int, sink: Sink) -> None:
        self.model, self.sink = model, sink
        height, width = model.prep.shape
        self.batch = np.empty((batch_size, height, width, 3), dtype=np.uint8)  # refilled once its rows are put
        self.pending: deque[list[int]] = deque()
        self.first_batch_at: float | None = None

    def embed_all(self, decoder: Decoder) -> None:
        flight = self.model.in_flight()
        try:
            rows: list[int] = []
            limit = min(len(self.batch), FIRST_BATCH)  # rows of the batch being filled: small first, then full
            for row, pixels, reason in decoder.items():
                if pixels is None:
                    self.sink.unreadable(row, reason or "unreadable")
                else:
                    self.batch[len(rows)] = pixels
                    rows.append(row)
                if len(rows) == limit:
                    self._put(flight, rows, self.model.streams if limit < len(self.batch) else 1)
                    rows, limit = [], len(self.batch)
                else:
                    self._deliver(flight.ready())
            self._put(flight, rows, self.model.streams)
            self._deliver(flight.finish())
        finally:
            flight.close()
            decoder.stop()

    def _put(self, flight: InFlight, rows: list[int], parts: int) -> None:
        for part in np.array_split(np.arange(len(rows)), min(parts, len(rows))) if rows else ():
            self.pending.append([rows[i] for i in part.tolist()])
            self._deliver(flight.put(self.batch[part[0] : part[-1] + 1]))

    def _deliver(self, done: list[np.ndarray]) -> None:
        for vectors in done:
            if self.first_batch_at is None:
                self.first_batch_at = time.time()
            self.sink.vectors(np.asarray(self.pending.popleft(), dtype=np.int64), vectors)
