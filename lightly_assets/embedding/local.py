"""`LocalExecutor`: the decode-and-embed step in this process, decoder threads feeding the model batch after batch.

The first batch is small (`FIRST_BATCH` samples), the others the job's batch size: the network starts as soon as a
few samples are decoded instead of waiting for a whole batch, and the first vectors (and the start-up figure) come
after a short forward pass: 64 samples of the default network take 0.1 s on 2 AMX cores but 0.65 s on 2 AVX-512
cores (4 samples: 0.14 CPU-s there, with OpenVINO's one-time set-up of a batch shape it has not seen). A vector
does not depend on the batch it was in (within cosine 0.9999 where bf16 kernels differ by batch shape).
"""

from __future__ import annotations

import time

import numpy as np

from lightly_assets.embedding.decode import Decoder, tasks
from lightly_assets.embedding.embedder import Embedder
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
    """Consumes decoded samples in arrival order; each batch's vectors go straight to the sink."""

    def __init__(self, model: Embedder, batch_size: int, sink: Sink) -> None:
        self.model, self.sink = model, sink
        height, width = model.prep.shape
        self.batch = np.empty((batch_size, height, width, 3), dtype=np.uint8)
        self.rows: list[int] = []
        self.first_batch_at: float | None = None
        self.limit = min(batch_size, FIRST_BATCH)  # rows of the batch being filled: small first, then full

    def embed_all(self, decoder: Decoder) -> None:
        try:
            for row, pixels, reason in decoder.items():
                if pixels is None:
                    self.sink.unreadable(row, reason or "unreadable")
                    continue
                self.batch[len(self.rows)] = pixels
                self.rows.append(row)
                if len(self.rows) == self.limit:
                    self.flush()
                    self.limit = len(self.batch)
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
