"""`LocalExecutor`: the decode-and-embed step in this process, decoder threads feeding the model batch after batch.

The first batch is small (`FIRST_BATCH` samples), the others the job's batch size, each engine stream taking its
share (`Embedder.rows_per_put`): the network starts as soon as a few samples are decoded instead of waiting for a
whole batch, and the first vectors (and the start-up figure) come after a short forward pass: 64 samples of the
default network take 0.1 s on 2 AMX cores but 0.65 s on 2 AVX-512 cores (4 samples: 0.14 CPU-s there, with
OpenVINO's one-time set-up of a batch shape it has not seen). A vector does not depend on the batch it was in
(within cosine 0.9999 where bf16 kernels differ by batch shape).
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np

from lightly_assets.embedding.decode import Decoder, tasks
from lightly_assets.embedding.decode_pool import pool_size
from lightly_assets.embedding.embedder import Embedder, InFlight
from lightly_assets.embedding.executor import EmbedJob, JobResult, Sink
from lightly_assets.workers import usable_cores

FIRST_BATCH = 4  # samples in the first forward pass (at most the batch size)
WAITING_BYTES = 64 * 2**20  # decoded pixels that may wait for the network when the decoders have cores of their own


def queue_depth(batch_size: int, shape: tuple[int, int], own_cores: bool) -> int:
    """How many decoded samples may wait for the network.

    On a CPU the decoders share the cores with the network, and two batches keep it fed. Beside a GPU they have
    every core to themselves, so they keep decoding through the network's one-time set-up instead of stopping two
    batches ahead: on an H200 the first call took 0.95 s while 16 threads decode ~1,450 photos/s. Up to
    WAITING_BYTES of pixels then (5,461 samples at 64 px, 445 at 224 px).
    """
    if not own_cores:
        return 2 * batch_size
    height, width = shape
    return max(2 * batch_size, WAITING_BYTES // (height * width * 3))


class LocalExecutor:
    """The decode-and-embed step in this process: decoder threads (beside a GPU, with many photos: threads each
    waiting on a decoding process, `decode_pool`) feeding the model, batch after batch."""

    def describe(self) -> str:
        return "local"

    def run(self, job: EmbedJob, sink: Sink) -> JobResult:
        todo = tasks(job.samples, np.arange(len(job.samples)))
        own_cores = not job.model.low_priority_decode  # beside a GPU: nothing else computes on the cores
        photos = sum(1 for task in todo if not task.video)
        decoder = Decoder(
            todo,
            job.data_dir,
            job.model.prep,
            job.decode,
            job.workers,
            depth=queue_depth(job.batch_size, job.model.prep.shape, own_cores),
            low_priority=job.model.low_priority_decode,
            processes=pool_size(photos, own_cores, job.workers, usable_cores()),
        )
        batches = _Batches(job.model, job.batch_size, sink)
        batches.embed_all(decoder)
        return JobResult(first_batch_at=batches.first_batch_at, decode_processes=decoder.processes)


class _Batches:
    """Consumes decoded samples in arrival order; each batch's vectors go to the sink as soon as they are ready.

    Batches go into `Embedder.in_flight`, which keeps one in each OpenVINO stream while the next is filled, so the
    rows of each batch wait in `pending` until its vectors come back (checked after every decoded sample). Each
    stream takes its share of a batch (`Embedder.rows_per_put`), one after the other. The small first batch and
    the last one are split between the streams: the first vectors come as soon as with one stream of all the
    threads, and no stream idles at the end.
    """

    def __init__(self, model: Embedder, batch_size: int, sink: Sink) -> None:
        self.model, self.sink = model, sink
        height, width = model.prep.shape
        rows = model.rows_per_put(batch_size)
        self.batch = np.empty((rows, height, width, 3), dtype=np.uint8)  # refilled once its rows are put
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
