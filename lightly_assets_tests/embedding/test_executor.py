"""The executor contract: `embed_samples` hands an executor the rows the cache lacks as one job, and an
executor's batches, in whatever order they come, land on their own rows."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from lightly_assets.embedding import local
from lightly_assets.embedding.cache import EmbeddingCache
from lightly_assets.embedding.decode import load_image
from lightly_assets.embedding.embedder import InFlight
from lightly_assets.embedding.engines.openvino import OpenVINOEngine
from lightly_assets.embedding.executor import Collected, DecodeOptions, EmbedJob, JobResult, Sink
from lightly_assets.embedding.factory import load_model
from lightly_assets.embedding.local import FIRST_BATCH, LocalExecutor, queue_depth
from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples
from lightly_assets_tests.media import blocky_image
from lightly_assets_tests.tables import frame_index_for

SIZE = 16


@dataclass
class Backwards:
    """An executor that runs the job locally, then reports its batches last first, one row at a time."""

    jobs: list[EmbedJob] = field(default_factory=list)

    def describe(self) -> str:
        return "backwards"

    def run(self, job: EmbedJob, sink: Sink) -> JobResult:
        self.jobs.append(job)
        collected = Collected(dim=job.model.dim, n=len(job.samples))
        LocalExecutor().run(job, collected)
        for row in reversed(np.flatnonzero(collected.done).tolist()):
            sink.vectors(np.array([row]), collected.matrix[[row]])
        for row, reason in collected.reasons.items():
            sink.unreadable(row, reason)
        return JobResult(first_batch_at=123.0, nodes=frozenset({"n1", "n2"}))


def test_an_executor_gets_only_the_uncached_rows_and_its_vectors_land_in_order(tmp_path: Path) -> None:
    names = ["a/x.jpg", "a/y.png", "b/z.jpg", "b/w.png"]
    for i, name in enumerate(names):
        blocky_image(tmp_path / name, 40, 30, seed=i)
    (tmp_path / "b" / "broken.png").write_bytes(b"not an image")
    model = load_model(None, input_size=SIZE, seed=0, precision="fp32")
    cache = EmbeddingCache(tmp_path / "cache.npz")
    local = embed_samples(
        frame_index_for(tmp_path, names[:2]), tmp_path, model, cache=cache, options=EmbedOptions(draft=False)
    )
    assert local.embedded == 2

    index = frame_index_for(tmp_path, [*names, "b/broken.png"])
    executor, progress = Backwards(), []
    result = embed_samples(
        index, tmp_path, model, EmbedOptions(batch_size=2, workers=1, draft=False), cache=cache, executor=executor,
        progress=lambda done, total: progress.append((done, total)),
    )  # fmt: skip
    (job,) = executor.jobs
    assert list(job.samples["filename"]) == ["b/z.jpg", "b/w.png", "b/broken.png"]  # the cache had the rest
    assert (job.batch_size, job.workers, job.decode) == (2, 1, DecodeOptions(draft=False))
    assert result.filenames == names and result.reused == 2 and result.embedded == 2
    assert [n for n, _ in result.unreadable] == ["b/broken.png"] and "UnidentifiedImageError" in result.unreadable[0][1]
    assert (result.first_batch_at, result.nodes) == (123.0, frozenset({"n1", "n2"}))
    reference = embed_samples(frame_index_for(tmp_path, names), tmp_path, model, options=EmbedOptions(draft=False))
    np.testing.assert_allclose(result.matrix, reference.matrix, rtol=1e-5, atol=1e-6)
    assert progress[0] == (2, 5) and progress[-1] == (5, 5)


def test_the_local_executor_reports_when_its_first_batch_was_ready(tmp_path: Path) -> None:
    blocky_image(tmp_path / "x.png", 20, 20, seed=0)
    model = load_model(None, input_size=SIZE, seed=0)
    job = EmbedJob(frame_index_for(tmp_path, ["x.png"]), tmp_path, model, batch_size=4, workers=1)
    collected = Collected(dim=model.dim, n=1)
    outcome = LocalExecutor().run(job, collected)
    assert collected.done.tolist() == [True] and outcome.first_batch_at is not None and outcome.nodes == frozenset()
    assert LocalExecutor().describe() == "local"


@pytest.mark.openvino
def test_the_first_batch_is_small_and_no_vector_depends_on_its_batch(tmp_path: Path) -> None:
    """The network's first forward pass takes a few samples (the first vectors come sooner), later ones full
    batches; on the default engine (OpenVINO, the machine's default precision) every vector is the one it gets
    alone (within the outputs' cosine 0.9999: bf16 kernels may differ by batch shape), in `frame_index` order."""
    names = [f"a/{i:02d}.jpg" for i in range(FIRST_BATCH + 13)]
    for i, name in enumerate(names):
        blocky_image(tmp_path / name, 40, 30, seed=i)
    model = load_model(None, input_size=SIZE, seed=0, engine="openvino", precision="auto")
    sizes: list[int] = []

    def recording(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        return model.runner(batch)

    counted = dataclasses.replace(model, runner=recording)
    result = embed_samples(frame_index_for(tmp_path, names), tmp_path, counted, EmbedOptions(batch_size=10, workers=2))
    assert sizes == [FIRST_BATCH, 10, 3] and result.filenames == names
    alone = np.concatenate([model.embed(load_image(tmp_path / n, SIZE)[None]) for n in names])
    cosine = (result.matrix * alone).sum(1) / np.linalg.norm(result.matrix, axis=1) / np.linalg.norm(alone, axis=1)
    assert cosine.min() > 0.9999


@pytest.mark.openvino
def test_two_streams_keep_the_rows_and_share_the_last_batch(tmp_path: Path) -> None:
    """With two OpenVINO streams each takes half of every batch, one after the other, and a half is in the network
    while the next is filled (from the same array, which the engine copies): every vector lands on its own row,
    and the small first batch and the last one are split between the streams."""
    names = [f"a/{i:02d}.jpg" for i in range(FIRST_BATCH + 23)]
    for i, name in enumerate(names):
        blocky_image(tmp_path / name, 40, 30, seed=i)
    model = load_model(None, input_size=SIZE, seed=0, engine="openvino", precision="fp32", threads=2)
    engine = model.runner
    assert model.streams == 2 and isinstance(engine, OpenVINOEngine)
    sizes: list[int] = []

    class Recording:
        """The engine, noting the size of each batch put into it."""

        name, precision, streams = "openvino", "fp32", 2

        def __call__(self, batch: np.ndarray) -> np.ndarray:
            return model.runner(batch)

        def rows_per_request(self, batch_size: int, pixels: int) -> int:
            return engine.rows_per_request(batch_size, pixels)

        def in_flight(self) -> InFlight:
            flight = model.in_flight()
            put = flight.put
            flight.put = lambda pixels: sizes.append(len(pixels)) or put(pixels)  # type: ignore[method-assign]
            return flight

    counted = dataclasses.replace(model, runner=Recording())
    result = embed_samples(frame_index_for(tmp_path, names), tmp_path, counted, EmbedOptions(batch_size=10, workers=2))
    assert sizes == [FIRST_BATCH // 2, FIRST_BATCH // 2, 5, 5, 5, 5, 2, 1] and result.filenames == names
    alone = np.concatenate([model.embed(load_image(tmp_path / n, SIZE)[None]) for n in names])
    np.testing.assert_allclose(result.matrix, alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("own_cores", "waiting"), [(True, 3 * 8 - FIRST_BATCH + 2), (False, 2 * 8)])
def test_decoders_beside_a_gpu_keep_going_while_the_network_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_cores: bool, waiting: int
) -> None:
    """While the network's first call runs (a GPU's one-time set-up), decoders with cores of their own decode
    every remaining sample (all fit in the bytes allowed: the queue then also holds each of the two workers' end
    mark); decoders sharing the cores stop two batches ahead."""
    names = [f"a/{i:02d}.png" for i in range(3 * 8)]
    for i, name in enumerate(names):
        blocky_image(tmp_path / name, 20, 20, seed=i)
    decoders: list[local.Decoder] = []

    class Watched(local.Decoder):
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            super().__init__(*args, **kwargs)
            decoders.append(self)

    monkeypatch.setattr(local, "Decoder", Watched)
    model = load_model(None, input_size=SIZE, seed=0, precision="fp32")
    seen: list[int] = []

    def slow_first_call(batch: np.ndarray) -> np.ndarray:
        if not seen:  # wait until the decoders can go no further (or 10 s)
            deadline, queued = time.monotonic() + 10, -1
            while time.monotonic() < deadline and queued != decoders[0].out.qsize():
                queued = decoders[0].out.qsize()
                time.sleep(0.3)
            seen.append(decoders[0].out.qsize())
        return model.runner(batch)

    slow = dataclasses.replace(model, runner=slow_first_call, low_priority_decode=not own_cores)
    result = embed_samples(frame_index_for(tmp_path, names), tmp_path, slow, EmbedOptions(batch_size=8, workers=2))
    assert seen == [waiting]
    assert result.filenames == names


def test_the_queue_is_bounded_by_batches_on_a_cpu_and_by_bytes_beside_a_gpu() -> None:
    assert queue_depth(64, (64, 64), own_cores=False) == 128
    assert queue_depth(64, (64, 64), own_cores=True) == local.WAITING_BYTES // (64 * 64 * 3)
    assert queue_depth(64, (224, 224), own_cores=True) * 224 * 224 * 3 <= local.WAITING_BYTES
    assert queue_depth(512, (512, 512), own_cores=True) == 1024  # never fewer than two batches
