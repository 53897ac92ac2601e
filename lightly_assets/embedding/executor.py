"""The executor contract: what `embed_samples` hands to whoever decodes and embeds, and what comes back.

`embed_samples` decides what needs a vector (the cache comes first) and owns the result; an executor only turns
a job (the samples still to embed and how) into vectors, reporting each batch to a sink as it goes so progress
and the cache checkpoint follow the work and a killed run loses little. `local.LocalExecutor` does it in this
process; `distributed.RayExecutor` on a Ray cluster. Both are named by the same choices, `EXECUTORS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # pandas: a worker process that only decodes photos does not load it
    import pandas as pd

    from lightly_assets.embedding.embedder import Embedder

EXECUTORS = ("local", "ray")  # the values of `embedding_model.executor` (LIGHTLY_ASSETS_EXECUTOR)


@dataclass(frozen=True)
class DecodeOptions:
    """How samples are decoded; part of the cache fingerprint, so a change re-embeds.

    `draft`: JPEGs are decoded at a reduced DCT scale before the resize (see `pipeline.DRAFT_FACTOR`).
    `orientation`: `upright` turns photos by their EXIF orientation and frames by their display rotation;
    `raw` keeps the stored pixels (lightly-embed's).
    """

    draft: bool = True
    orientation: str = "upright"


@dataclass(frozen=True)
class EmbedJob:
    """The samples still to embed: `samples` holds their `frame_index` rows; a job row is a position in it."""

    samples: pd.DataFrame
    data_dir: Path
    model: Embedder
    batch_size: int = 64
    workers: int = 1
    decode: DecodeOptions = field(default_factory=DecodeOptions)


@dataclass(frozen=True)
class JobResult:
    """What an executor says about the job beyond the vectors it reported.

    `first_batch_at`: wall-clock time (`time.time()`) at which the first vectors were ready in this process,
    for start-up measurements; None when nothing was embedded. `nodes`: the Ray nodes that did work (empty
    locally). `decode_processes`: processes that decoded photos (`decode_pool`; 0: threads decoded them).
    """

    first_batch_at: float | None = None
    nodes: frozenset[str] = frozenset()
    decode_processes: int = 0


class Sink(Protocol):
    """Where an executor puts what it makes, in any order, as soon as it has it."""

    def vectors(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Vectors (float32, one per row) of these job rows."""

    def unreadable(self, row: int, reason: str) -> None:
        """This job row could not be decoded, for this reason (one line)."""


class Executor(Protocol):
    """Decodes and embeds the samples of a job, reporting to the sink; raises a LightlyAssetsError if it cannot."""

    def describe(self) -> str:
        """Where the work runs, for metadata and logs (never a secret)."""
        ...

    def run(self, job: EmbedJob, sink: Sink) -> JobResult: ...


@dataclass
class Collected:
    """A sink that keeps everything, by job row: for an executor that runs a job on behalf of another."""

    dim: int
    n: int
    matrix: np.ndarray = field(init=False)
    done: np.ndarray = field(init=False)
    reasons: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = np.zeros((self.n, self.dim), dtype=np.float32)
        self.done = np.zeros(self.n, dtype=bool)

    def vectors(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        self.matrix[rows] = vectors
        self.done[rows] = True

    def unreadable(self, row: int, reason: str) -> None:
        self.reasons[int(row)] = reason
