"""Photos decoded in processes (beside a GPU, many photos): the same pixels, rows and reasons as the threads, videos
still in threads, and a pool that breaks or closes never loses or hangs a row."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from lightly_assets.embedding import decode_pool, local
from lightly_assets.embedding.decode import CHUNK, Decoder, _in_chunks, as_preprocessing, decode_photos, tasks
from lightly_assets.embedding.decode_pool import PhotoPool, pool_size
from lightly_assets.embedding.executor import DecodeOptions
from lightly_assets.embedding.factory import load_model
from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples
from lightly_assets_tests.media import blocky_image, shaded_video
from lightly_assets_tests.tables import frame_index_for

SIZE = 16


def _folder(root: Path, photos: int) -> tuple[list[str], dict[str, int]]:
    names = [f"{'ab'[i % 2]}/{i:03d}.{'jpg' if i % 3 else 'png'}" for i in range(photos)]
    for i, name in enumerate(names):
        blocky_image(root / name, 40, 30, seed=i)
    (root / "b" / "broken.jpg").write_bytes(b"not a photo")
    shaded_video(root / "v.mp4", 5)
    return [*names, "b/broken.jpg"], {"v.mp4": 5}


def _decoded(root: Path, index, processes: int) -> dict[int, tuple[np.ndarray | None, str | None]]:  # noqa: ANN001
    decoder = Decoder(
        tasks(index, np.arange(len(index))), root, as_preprocessing(SIZE), DecodeOptions(), 3, 64, processes=processes
    )
    try:
        return {row: (pixels, reason) for row, pixels, reason in decoder.items()}
    finally:
        decoder.stop()


def test_processes_decode_the_same_pixels_rows_and_reasons_as_threads(tmp_path: Path) -> None:
    names, videos = _folder(tmp_path, 2 * CHUNK + 3)
    index = frame_index_for(tmp_path, names, videos)
    threads, processes = _decoded(tmp_path, index, 0), _decoded(tmp_path, index, 2)
    assert sorted(processes) == sorted(threads) == list(range(len(index)))
    for row, (pixels, reason) in threads.items():
        other_pixels, other_reason = processes[row]
        assert other_reason == reason
        if pixels is None:
            assert other_pixels is None
        else:
            np.testing.assert_array_equal(other_pixels, pixels)
    broken = names.index("b/broken.jpg")
    assert threads[broken][0] is None and "UnidentifiedImageError" in str(threads[broken][1])


def test_photos_go_in_chunks_in_order_and_each_video_alone(tmp_path: Path) -> None:
    names, videos = _folder(tmp_path, CHUNK + 2)
    units = _in_chunks(tasks(frame_index_for(tmp_path, names, videos), np.arange(len(names) + 5)))
    photos = [u for u in units if isinstance(u, list)]
    assert [len(u) for u in photos] == [CHUNK, 3]
    assert [t.source for u in photos for t in u] == names
    assert [u.source for u in units if not isinstance(u, list)] == ["v.mp4"]


def test_processes_only_beside_a_gpu_with_many_photos_and_cores() -> None:
    many = decode_pool.PROCESS_MIN_PHOTOS
    assert pool_size(many, own_cores=True, workers=16, cores=16) == 16
    assert pool_size(many - 1, own_cores=True, workers=16, cores=16) == 0  # the pool's start would not pay
    assert pool_size(many, own_cores=False, workers=16, cores=16) == 0  # a CPU: the network needs the cores
    assert pool_size(many, own_cores=True, workers=16, cores=decode_pool.MIN_CORES - 1) == 0


def _die_in_a_worker(chunk: list[int]) -> list[int]:
    """Kills the worker process it runs in; in the test's own process it does the work."""
    if getattr(sys.modules["__main__"].__spec__, "name", "") == decode_pool.__name__:
        os._exit(3)
    return [2 * x for x in chunk]


def test_a_broken_pool_decodes_in_the_thread_and_a_closed_one_returns_nothing() -> None:
    pool = PhotoPool(2, _die_in_a_worker)
    try:
        assert pool.decode([1, 2]) == [2, 4]  # the process died: done here instead
        assert pool.decode([3]) == [6]
    finally:
        pool.close()
    closed = PhotoPool(1, decode_photos)
    closed.close()
    assert closed.decode([], Path("."), as_preprocessing(SIZE), DecodeOptions()) == []


def test_workers_are_reused_and_closing_ends_them() -> None:
    pool = PhotoPool(2, decode_photos)
    try:
        for _ in range(3):
            assert pool.decode([], Path("."), as_preprocessing(SIZE), DecodeOptions()) == []
        (worker,) = pool._started  # one thread asked: one process, reused
    finally:
        pool.close()
    assert worker.proc.poll() is not None


def test_the_pipeline_beside_a_gpu_embeds_photos_from_processes_as_from_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names, videos = _folder(tmp_path, CHUNK + 5)
    index = frame_index_for(tmp_path, names, videos)
    model = load_model(None, input_size=SIZE, seed=0, precision="fp32")
    threads = embed_samples(index, tmp_path, model, EmbedOptions(workers=2))
    sizes: list[int] = []
    real = local.pool_size
    monkeypatch.setattr(decode_pool, "PROCESS_MIN_PHOTOS", 1)
    monkeypatch.setattr(local, "usable_cores", lambda: decode_pool.MIN_CORES)
    monkeypatch.setattr(local, "pool_size", lambda *a, **k: sizes.append(real(*a, **k)) or sizes[-1])
    beside_a_gpu = dataclasses.replace(model, low_priority_decode=False)
    processes = embed_samples(index, tmp_path, beside_a_gpu, EmbedOptions(workers=2))
    assert sizes == [2] and (threads.decode_processes, processes.decode_processes) == (0, 2)
    assert processes.filenames == threads.filenames and processes.unreadable == threads.unreadable
    np.testing.assert_allclose(processes.matrix, threads.matrix, rtol=1e-6, atol=1e-7)
