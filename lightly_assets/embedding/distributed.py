"""Embedding on a Ray cluster: the samples that still need a vector go to Ray tasks, the vectors come back.

`RayExecutor` is an `executor.Executor`: `embed_samples` decides what needs embedding (the cache comes first) and
hands the rest over as one `EmbedJob`. Each Ray task runs `local.LocalExecutor` (decoder threads feeding the
model) on a chunk of the job: up to `batch_size` images, or all needed frames of one video, so every video is
decoded sequentially, once, by one task. The model travels once per run as an object in Ray's object store (the
network with its weights) and is kept by each Ray worker process for the tasks that follow.

Tasks ask Ray for resources (`num_cpus`, and `num_gpus` where the cluster has GPUs) and are spread over the
nodes; a task whose node or worker dies is retried by Ray (`max_retries`). The cluster address is given by the
`ray_cluster` resource (`RAY_ADDRESS`, bound in `definitions.py`); an address that does not answer is a one-line
error within seconds. The input folder must be readable at the same path on every node (a shared volume), as it
is for Dagster's run workers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from lightly_assets.embedding.embedder import Embedder
from lightly_assets.embedding.errors import EmbeddingError
from lightly_assets.embedding.executor import Collected, EmbedJob, JobResult, Sink
from lightly_assets.embedding.local import LocalExecutor
from lightly_assets.embedding.pipeline import REQUIRED_COLUMNS
from lightly_assets.errors import exception_line
from lightly_assets.publish.secrets import mask_url

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0


class RayExecutorError(EmbeddingError):
    """The Ray cluster cannot be used or failed the work; one line naming the cluster and the reason."""


@dataclass(frozen=True)
class RayExecutor:
    """Runs an `EmbedJob` as Ray tasks on the cluster at `address` (host:port, ray://host:port, or `auto`).

    `num_gpus=None` asks for one GPU per task when the cluster has GPUs and none otherwise. An empty address
    joins a cluster this process is already connected to (`ray.init` done by the caller), else fails.
    """

    address: str = ""
    num_cpus: float = 1.0
    num_gpus: float | None = None
    max_retries: int = 3

    def describe(self) -> str:
        return f"ray ({mask_url(self.address)})"

    def run(self, job: EmbedJob, sink: Sink) -> JobResult:
        """Every chunk's vectors go to the sink as it returns, so a killed run keeps what the cluster sent back."""
        ray = _import_ray()
        with _connected(ray, self.address):
            gpus = gpus_per_task(self.num_gpus, ray.cluster_resources())
            remote = ray.remote(_embed_chunk).options(
                num_cpus=self.num_cpus,
                num_gpus=gpus,
                max_retries=self.max_retries,
                retry_exceptions=False,
                scheduling_strategy="SPREAD",
            )
            model_ref = ray.put(_portable(job.model))
            columns = list(REQUIRED_COLUMNS)
            pending: dict[Any, np.ndarray] = {}
            samples = job.samples
            for rows in _chunks(samples, np.arange(len(samples)), job.batch_size):
                chunk = dataclasses.replace(job, samples=samples.iloc[rows][columns].reset_index(drop=True))
                pending[remote.remote([model_ref], job.model.fingerprint, _Shipped.of(chunk))] = rows
            nodes: set[str] = set()
            first_batch_at: float | None = None
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    rows = pending.pop(ready[0])
                    node, ok, vectors, reasons = _result(ray, ready[0], self.address, samples, rows)
                    nodes.add(node)
                    for local, reason in reasons.items():
                        sink.unreadable(int(rows[local]), reason)
                    if len(ok):
                        first_batch_at = first_batch_at or time.time()
                        sink.vectors(rows[ok], vectors)
            finally:
                for ref in pending:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)
        return JobResult(first_batch_at=first_batch_at, nodes=frozenset(nodes))


def gpus_per_task(asked: float | None, cluster: Mapping[str, float]) -> float:
    """What each task asks for: `asked` when set, else one GPU where the cluster has any, else none."""
    if asked is not None:
        return asked
    return 1.0 if cluster.get("GPU", 0) >= 1 else 0.0


def _import_ray():
    try:
        import ray  # optional (the `ray` extra): only the ray executor needs it
    except ImportError:
        raise RayExecutorError(
            "embedding_model.executor=ray needs Ray: install the extra with pip install -e '.[ray]'"
        ) from None
    return ray


@contextlib.contextmanager
def _connected(ray, address: str) -> Iterator[None]:
    """Join the cluster for this run (unless this process already has), and leave it afterwards."""
    if ray.is_initialized():
        yield
        return
    if not address:
        raise RayExecutorError(
            "embedding_model.executor=ray needs ray_cluster.address (RAY_ADDRESS): the head node as host:port "
            "(or ray://host:10001)"
        )
    _probe(address)
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # noqa: BLE001 - a cluster that answers but cannot be joined
        raise RayExecutorError(f"Ray cluster {mask_url(address)}: cannot connect: {exception_line(exc)}") from None
    try:
        yield
    finally:
        ray.shutdown()


def _probe(address: str) -> None:
    """A TCP connect to the head first: `ray.init` on a dead address retries for a long time."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rsplit("@", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise RayExecutorError(f"ray_cluster.address={mask_url(address)!r} is not host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise RayExecutorError(
            f"Ray cluster {mask_url(address)} cannot be reached ({exc.strerror or type(exc).__name__}); "
            "is the head node up and ray_cluster.address (RAY_ADDRESS) right?"
        ) from None


def _chunks(frame_index: pd.DataFrame, todo: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Rows per task: images in groups of `batch_size`, each video's frames together, in frame_index order."""
    kinds = frame_index["kind"].to_numpy()
    sources = frame_index["source"].to_numpy()
    videos: dict[str, list[int]] = {}
    images: list[int] = []
    for row in todo.tolist():
        if kinds[row] == "video":
            videos.setdefault(str(sources[row]), []).append(row)
        else:
            images.append(row)
    chunks = [np.asarray(images[i : i + batch_size], dtype=np.int64) for i in range(0, len(images), batch_size)]
    return chunks + [np.asarray(rows, dtype=np.int64) for rows in videos.values()]


def _portable(model: Embedder) -> Embedder:
    """The model as it travels: on the CPU, so any node can take it to its own device."""
    return model.to("cpu", precision=model.precision)  # the worker decides what its device computes in


def _result(ray, ref, address: str, frame_index: pd.DataFrame, rows: np.ndarray):
    try:
        return ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - retries are exhausted: name the work and the cluster's reason
        first = str(frame_index["source"].iloc[int(rows[0])])
        cause = getattr(exc, "cause", None)  # a RayTaskError's first line names the task; its cause, the failure
        reason = exception_line(cause if isinstance(cause, BaseException) else exc)
        log.debug("Ray task failed: %s", exc)  # the worker's traceback, for whoever runs at debug level
        raise RayExecutorError(
            f"Ray cluster {mask_url(address)}: embedding {len(rows)} samples from {first} failed: {reason}"
        ) from None


# ---------------------------------------------------------------------------------------------------------
# Inside the Ray worker processes.

_WORKER_MODEL: dict[str, Embedder] = {}


def _worker_model(model_box: list, fingerprint: str) -> Embedder:
    """The run's model on this worker's device, fetched from the object store once per worker process."""
    model = _WORKER_MODEL.get(fingerprint)
    if model is None:
        import ray  # optional (the `ray` extra); present on a worker

        model = cast(Embedder, ray.get(model_box[0]))
        # OpenVINO stays on this worker's CPU (recompiled from the cache when unpickled); torch moves to its GPU.
        model = model.to("cuda" if ray.get_gpu_ids() else "cpu")
        _WORKER_MODEL.clear()
        _WORKER_MODEL[fingerprint] = model
    return model


@dataclass(frozen=True)
class _Shipped:
    """A chunk of the job as it travels to a Ray task: everything but the model, which goes by object ref."""

    samples: pd.DataFrame
    data_dir: str
    batch_size: int
    workers: int
    decode: Any

    @classmethod
    def of(cls, job: EmbedJob) -> _Shipped:
        return cls(job.samples, str(job.data_dir), job.batch_size, job.workers, job.decode)


def _embed_chunk(
    model_box: list, fingerprint: str, chunk: _Shipped
) -> tuple[str, np.ndarray, np.ndarray, dict[int, str]]:
    """One Ray task: the local executor on this chunk; (node id, chunk rows done, their vectors, unreadable)."""
    import ray  # optional (the `ray` extra); present on a worker

    start = time.perf_counter()
    model = _worker_model(model_box, fingerprint)
    job = EmbedJob(chunk.samples, Path(chunk.data_dir), model, chunk.batch_size, chunk.workers, chunk.decode)
    collected = Collected(dim=model.dim, n=len(chunk.samples))
    LocalExecutor().run(job, collected)
    ok = np.flatnonzero(collected.done)
    log.debug("embedded %d samples in %.2f s", len(ok), time.perf_counter() - start)
    return ray.get_runtime_context().get_node_id(), ok, collected.matrix[ok], collected.reasons
