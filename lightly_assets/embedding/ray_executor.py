"""Embedding on a Ray cluster: the samples that still need a vector go to Ray tasks, the vectors come back in order.

`embed_samples` decides what needs embedding (the cache comes first); this executor replaces only its local
decode-and-embed step. Each Ray task runs that same step (`pipeline._run`: decoder threads feeding the model)
on a chunk of rows: up to `batch_size` images, or all needed frames of one video, so every video is decoded
sequentially, once, by one task. The model travels once per run as an object in Ray's object store (the
network with its weights) and is kept by each Ray worker process for the tasks that follow.

Tasks ask Ray for resources (`num_cpus`, and `num_gpus` where the cluster has GPUs) and are spread over the
nodes; a task whose node or worker dies is retried by Ray (`max_retries`). The cluster address is Ray's own
`RAY_ADDRESS`; an address that does not answer is a one-line error within seconds. The input folder must be
readable at the same path on every node (a shared volume), as it is for Dagster's run workers.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lightly_assets.embedding.pipeline import REQUIRED_COLUMNS, EmbeddingError, _run
from lightly_assets.embedding.runtime import bf16_supported
from lightly_assets.publish.secrets import mask_url

if TYPE_CHECKING:  # model.py imports torch; a warm OpenVINO run does without it
    from lightly_assets.embedding.model import LoadedModel

log = logging.getLogger(__name__)

EXECUTOR_ENV = "LIGHTLY_ASSETS_EXECUTOR"
ADDRESS_ENV = "RAY_ADDRESS"
EXECUTORS = ("local", "ray")
CONNECT_TIMEOUT_S = 5.0


class RayExecutorError(EmbeddingError):
    """The Ray cluster cannot be used or failed the work; one line naming the cluster and the reason."""


def choose_executor(name: str | None = None) -> RayExecutor | None:
    """The executor named here or in LIGHTLY_ASSETS_EXECUTOR: None for `local` (the in-process pipeline)."""
    chosen = (name or os.environ.get(EXECUTOR_ENV) or "local").strip().lower()
    if chosen not in EXECUTORS:
        raise EmbeddingError(f"{EXECUTOR_ENV} must be one of {', '.join(EXECUTORS)}, got {chosen!r}")
    return RayExecutor() if chosen == "ray" else None


@dataclass
class RayExecutor:
    """Runs the decode-and-embed step of `embed_samples` as Ray tasks; after a run, `nodes` names the nodes used.

    `num_gpus=None` asks for one GPU per task when the cluster has GPUs and none otherwise.
    """

    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float | None = None
    max_retries: int = 3
    nodes: set[str] = field(default_factory=set)

    def describe(self) -> str:
        return f"ray ({mask_url(self.resolved_address())})"

    def resolved_address(self) -> str:
        return self.address or os.environ.get(ADDRESS_ENV, "")

    def __call__(
        self,
        frame_index: pd.DataFrame,
        data_dir: Path,
        model: LoadedModel,
        todo: np.ndarray,
        batch_size: int,
        workers: int,
        draft: bool,
        matrix: np.ndarray,
        done: np.ndarray,
        unreadable: dict[int, str],
        progress: Callable[[int, int], None] | None,
        checkpoint: Callable[[], None] | None = None,
    ) -> None:
        """Same contract as `pipeline._run`: fill `matrix`/`done`/`unreadable` for the rows in `todo`.

        `checkpoint` runs after each gathered chunk, so a killed run keeps what the cluster already returned.
        """
        ray = _import_ray()
        address = self.resolved_address()
        with _connected(ray, address):
            gpus = gpus_per_task(self.num_gpus, ray.cluster_resources())
            remote = ray.remote(_embed_chunk).options(
                num_cpus=self.num_cpus,
                num_gpus=gpus,
                max_retries=self.max_retries,
                retry_exceptions=False,
                scheduling_strategy="SPREAD",
            )
            model_ref = ray.put(_portable(model))
            columns = list(REQUIRED_COLUMNS)
            pending: dict[Any, np.ndarray] = {}
            for rows in _chunks(frame_index, todo, batch_size):
                rows_table = frame_index.iloc[rows][columns].reset_index(drop=True)
                ref = remote.remote(
                    [model_ref], model.fingerprint, rows_table, str(data_dir), batch_size, workers, draft
                )
                pending[ref] = rows
            n = len(frame_index)
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    rows = pending.pop(ready[0])
                    node, ok, vectors, reasons = _result(ray, ready[0], address, frame_index, rows)
                    self.nodes.add(node)
                    matrix[rows[ok]] = vectors
                    done[rows[ok]] = True
                    for local, reason in reasons.items():
                        unreadable[int(rows[local])] = reason
                    if progress:
                        progress(int(done.sum()) + len(unreadable), n)
                    if checkpoint:
                        checkpoint()
            finally:
                for ref in pending:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)


def gpus_per_task(asked: float | None, cluster: dict[str, float]) -> float:
    """What each task asks for: `asked` when set, else one GPU where the cluster has any, else none."""
    if asked is not None:
        return asked
    return 1.0 if cluster.get("GPU", 0) >= 1 else 0.0


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayExecutorError(
            f"{EXECUTOR_ENV}=ray needs Ray: install the extra with pip install -e '.[ray]'"
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
            f"{EXECUTOR_ENV}=ray needs ${ADDRESS_ENV}: the head node as host:port (or ray://host:10001)"
        )
    _probe(address)
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # noqa: BLE001 - a cluster that answers but cannot be joined
        raise RayExecutorError(f"Ray cluster {mask_url(address)}: cannot connect: {_first_line(exc)}") from None
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
        raise RayExecutorError(f"${ADDRESS_ENV}={mask_url(address)!r} is not host:port or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise RayExecutorError(
            f"Ray cluster {mask_url(address)} cannot be reached ({exc.strerror or type(exc).__name__}); "
            f"is the head node up and ${ADDRESS_ENV} right?"
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


def _portable(model: LoadedModel) -> LoadedModel:
    """The model as it travels: on the CPU, so any node can take it to its own device."""
    if model.device.type == "cpu":
        return model
    import torch

    return dataclasses.replace(model, module=copy.deepcopy(model.module).cpu(), device=torch.device("cpu"))


def _result(ray, ref, address: str, frame_index: pd.DataFrame, rows: np.ndarray):
    try:
        return ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - retries are exhausted: name the work and the cluster's reason
        first = str(frame_index["source"].iloc[int(rows[0])])
        raise RayExecutorError(
            f"Ray cluster {mask_url(address)}: embedding {len(rows)} samples from {first} failed: {_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# ---------------------------------------------------------------------------------------------------------
# Inside the Ray worker processes.

_WORKER_MODEL: dict[str, LoadedModel] = {}


def _worker_model(model_box: list, fingerprint: str) -> LoadedModel:
    """The run's model on this worker's device, fetched from the object store once per worker process."""
    model = _WORKER_MODEL.get(fingerprint)
    if model is None:
        import ray

        model = ray.get(model_box[0])
        if getattr(model, "compiled", None) is not None and not ray.get_gpu_ids():
            _WORKER_MODEL.clear()  # OpenVINO on this worker's CPU (recompiled from the cache when unpickled)
            _WORKER_MODEL[fingerprint] = model
            return model
        import torch

        device = torch.device("cuda") if ray.get_gpu_ids() else torch.device("cpu")
        precision = model.precision if model.precision != "bf16" or bf16_supported(device) else "fp32"
        model = dataclasses.replace(model, module=model.module.to(device), device=device, precision=precision)
        _WORKER_MODEL.clear()
        _WORKER_MODEL[fingerprint] = model
    return model


def _embed_chunk(
    model_box: list,
    fingerprint: str,
    rows: pd.DataFrame,
    data_dir: str,
    batch_size: int,
    workers: int,
    draft: bool,
) -> tuple[str, np.ndarray, np.ndarray, dict[int, str]]:
    """One Ray task: the local decode-and-embed step on these rows; (node id, rows done, their vectors, unreadable)."""
    import ray

    start = time.perf_counter()
    model = _worker_model(model_box, fingerprint)
    matrix = np.zeros((len(rows), model.dim), dtype=np.float32)
    done = np.zeros(len(rows), dtype=bool)
    unreadable: dict[int, str] = {}
    todo = np.arange(len(rows), dtype=np.int64)
    _run(rows, Path(data_dir), model, todo, batch_size, workers, draft, matrix, done, unreadable, None)
    ok = np.flatnonzero(done)
    log.debug("embedded %d samples in %.2f s", len(ok), time.perf_counter() - start)
    return ray.get_runtime_context().get_node_id(), ok, matrix[ok], unreadable
