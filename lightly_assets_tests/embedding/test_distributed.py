"""Embedding on a Ray cluster: a head and a worker node (1 CPU each) on 127.0.0.1, in a network namespace of
the test's own with loopback only, so that none of Ray's listeners is reachable from outside.

The pytest process starts `unshare -n --fork --pid --mount-proc python this_file.py WORK`: inside, the script
starts both nodes and runs `lightly-assets run first second` with LIGHTLY_ASSETS_EXECUTOR=ray; once `first` is
embedded, it kills the worker node (its raylet and worker processes, by pid) while that node runs a task of
`second`. Then it stops every process it started by pid and writes what it saw to WORK. The pid namespace ends
with the script, so nothing outlives it. The comparison with the local pipeline happens here, in pytest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lightly_assets_tests import REPO, ray_cluster
from lightly_assets_tests.media import make_image, make_video, noise_frames

DATASETS = {"first": (6, 2), "second": (0, 3)}  # name -> (images, videos of 24 frames)


def make_dataset(root: Path, name: str) -> Path:
    """Images in two labels and short videos of noise; each video is one Ray task, the images one more."""
    images, videos = DATASETS[name]
    folder = root / name
    for i in range(images):
        make_image(folder / "images" / ("a" if i % 2 else "b") / f"{i}.png", seed=i)
    for v in range(videos):
        make_video(
            folder / "videos" / f"clip{v}.mp4", 24, (64, 48), rate=12, frames=noise_frames(seed=100 * len(name) + v)
        )
    return folder


def frame_index_of(folder: Path):
    from lightly_assets.dataset.samples import build_sample_index
    from lightly_assets.dataset.scan import scan_dataset

    return build_sample_index(scan_dataset(folder).files, folder).samples


def local_embeddings(folder: Path):
    from lightly_assets.embedding.factory import load_model
    from lightly_assets.embedding.pipeline import embed_samples

    model = load_model(None, input_size=64, seed=0, precision="fp32")  # EmbeddingModelResource's defaults
    return embed_samples(frame_index_of(folder), folder, model)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ---------------------------------------------------------------------------------------------------------
# In the pytest process.


def test_executor_is_chosen_by_the_resource_field_and_a_bad_one_names_it() -> None:
    from lightly_assets.defs.resources import ConfigurationError, EmbeddingModelResource, RayClusterResource
    from lightly_assets.embedding.distributed import RayExecutor
    from lightly_assets.embedding.local import LocalExecutor

    cluster = RayClusterResource(address="10.0.0.1:6379", num_cpus=2)
    assert isinstance(EmbeddingModelResource().executor_for(cluster), LocalExecutor)
    ray = EmbeddingModelResource(executor="ray").executor_for(cluster)
    assert ray == RayExecutor(address="10.0.0.1:6379", num_cpus=2) and ray.describe() == "ray (10.0.0.1:6379)"
    with pytest.raises(ConfigurationError, match=r"^embedding_model.executor='spark' is not one of local, ray$"):
        EmbeddingModelResource(executor="spark").executor_for(cluster)


def test_a_bad_executor_in_run_config_fails_the_step_naming_the_field(tmp_path: Path) -> None:
    from dagster import DagsterInstance, materialize

    from lightly_assets.definitions import resources
    from lightly_assets.defs.embedding import embeddings
    from lightly_assets.defs.indexing import file_index, frame_index
    from lightly_assets.defs.partitions import datasets_partitions
    from lightly_assets.defs.resources import StorageResource
    from lightly_assets.summary import failure_reason

    make_image(tmp_path / "data" / "ds" / "a.png")
    storage = StorageResource(data_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "out"))
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(datasets_partitions.name, ["ds"])
        result = materialize(
            [file_index, frame_index, embeddings],
            instance=instance,
            partition_key="ds",
            resources={**resources(), "storage": storage},
            run_config={"resources": {"embedding_model": {"config": {"executor": "spark"}}}},
            raise_on_error=False,
        )
    (event,) = result.get_step_failure_events()
    assert failure_reason(event) == "embedding_model.executor='spark' is not one of local, ray"


def test_work_is_cut_into_image_batches_and_whole_videos() -> None:
    import pandas as pd

    from lightly_assets.embedding.distributed import _chunks, gpus_per_task

    kinds = ["image", "video", "image", "video", "image", "video", "image"]
    sources = ["a.png", "v1.mp4", "b.png", "v1.mp4", "c.png", "v2.mp4", "d.png"]
    index = pd.DataFrame({"kind": kinds, "source": sources})
    todo = np.array([0, 1, 2, 3, 5, 6])  # c.png came from the cache
    assert [c.tolist() for c in _chunks(index, todo, batch_size=2)] == [[0, 2], [6], [1, 3], [5]]
    assert gpus_per_task(None, {"CPU": 2.0}) == 0 and gpus_per_task(None, {"CPU": 8.0, "GPU": 2.0}) == 1
    assert gpus_per_task(0.5, {"GPU": 2.0}) == 0.5


def test_unreachable_cluster_is_a_clear_error_within_seconds(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
    from lightly_assets.embedding.distributed import RayExecutor, RayExecutorError
    from lightly_assets.embedding.factory import load_model
    from lightly_assets.embedding.pipeline import embed_samples

    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # the executor's address is the only one used
    folder = tmp_path / "ds"
    make_image(folder / "a.png")
    model = load_model(None, input_size=16)
    with socket_on_free_port() as port:  # bound, not listening: connections are refused
        start = time.monotonic()
        with pytest.raises(RayExecutorError, match=rf"Ray cluster 127\.0\.0\.1:{port} cannot be reached") as caught:
            embed_samples(frame_index_of(folder), folder, model, executor=RayExecutor(address=f"127.0.0.1:{port}"))
    assert time.monotonic() - start < 10 and len(str(caught.value).splitlines()) == 1
    with pytest.raises(
        RayExecutorError, match=r"embedding_model.executor=ray needs ray_cluster.address \(RAY_ADDRESS\)"
    ):
        embed_samples(frame_index_of(folder), folder, model, executor=RayExecutor())


class socket_on_free_port:
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


@pytest.mark.e2e
def test_embeddings_on_a_two_node_ray_cluster_survive_a_dying_worker(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")
    if not ray_cluster.namespaces_available():
        pytest.skip("needs `unshare -n` (root or user namespaces) to keep the test cluster on loopback")
    folders = {name: make_dataset(tmp_path / "data", name) for name in DATASETS}
    env = {**os.environ, "PYTHONPATH": str(REPO), "LIGHTLY_STUDIO_ANALYTICS_ENABLED": "false"}
    inside = subprocess.run(
        ray_cluster.in_namespace([sys.executable, __file__, str(tmp_path)]),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    facts_file = tmp_path / "facts.json"
    assert facts_file.is_file(), inside.stdout[-3000:] + inside.stderr[-3000:]
    facts = json.loads(facts_file.read_text())
    assert facts["left_running"] == [], facts  # every Ray process was stopped by pid
    assert facts["cli_rc"] == 0, facts["cli_out"]
    # The worker node died while it ran a task of `second`: Ray retried the task and the run completed.
    assert facts["killed_while_running"], facts
    from lightly.utils.io import load_embeddings

    for name, folder in folders.items():  # the same rows as the local pipeline, both datasets
        local = local_embeddings(folder)
        vectors, labels, names = load_embeddings(str(tmp_path / "out" / name / "embeddings.csv"))
        images, videos = DATASETS[name]
        assert names == local.filenames and labels == local.labels and len(names) == images + 24 * videos
        assert cosines(np.asarray(vectors, dtype=np.float32), local.matrix).min() >= 0.9999
    metadata = embeddings_metadata(tmp_path / "home")
    assert metadata["first"]["executor"] == f"ray ({ray_cluster.ADDRESS})"
    assert metadata["first"]["ray_nodes"] == 2, metadata  # both nodes embedded
    assert metadata["second"]["embedded"] == 3 * 24 and metadata["second"]["ray_nodes"] >= 1, metadata


def embeddings_metadata(home: Path) -> dict[str, dict]:
    """The metadata of the latest `embeddings` materialization of each dataset, read from the instance."""
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with DagsterInstance.get() as instance:
            found = {}
            for name in DATASETS:
                records = instance.fetch_materializations(
                    AssetRecordsFilter(asset_key=AssetKey("embeddings"), asset_partitions=[name]), limit=1
                ).records
                metadata = records[0].asset_materialization.metadata
                found[name] = {k: v.value for k, v in metadata.items()}
            return found
    finally:
        del os.environ["DAGSTER_HOME"]


# ---------------------------------------------------------------------------------------------------------
# Inside the namespace (this file run as a script).


def _kill_worker_node_mid_task(raylet: int, after: Path, facts: dict, stop: threading.Event) -> None:
    """Once `after` exists, kill the worker node by pid as soon as one of its Ray workers runs an embedding task."""
    while not stop.is_set():
        if after.exists() and any(
            "_embed_chunk" in ray_cluster.processes().get(p, "") for p in ray_cluster.children(raylet)
        ):
            node = [*ray_cluster.children(raylet), raylet]
            for pid in node:
                os.kill(pid, signal.SIGKILL)
            facts["killed_while_running"] = True
            facts["killed_pids"] = node
            return
        time.sleep(0.02)


def _inside_namespace(work: Path) -> None:
    facts: dict = {"killed_while_running": False}
    cluster = None
    stop = threading.Event()
    try:
        start = time.monotonic()
        cluster = ray_cluster.start()
        facts["cluster_start_s"] = round(time.monotonic() - start, 1)
        first_done = work / "out" / "first" / "embeddings.csv"
        args = (cluster.worker_raylet, first_done, facts, stop)
        killer = threading.Thread(target=_kill_worker_node_mid_task, args=args, daemon=True)
        killer.start()
        run_env = {
            **os.environ,
            "LIGHTLY_ASSETS_EXECUTOR": "ray",
            "RAY_ADDRESS": cluster.address,
            "DAGSTER_HOME": str(work / "home"),
            "LIGHTLY_ASSETS_DATA_DIR": str(work / "data"),
            "LIGHTLY_ASSETS_OUTPUT_DIR": str(work / "out"),
        }
        start = time.monotonic()
        cli = subprocess.run(
            [sys.executable, "-m", "lightly_assets", "run", *DATASETS],
            cwd=REPO,
            env=run_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        facts.update(cli_rc=cli.returncode, cli_out=cli.stdout[-4000:] + cli.stderr[-4000:])
        facts["cli_s"] = round(time.monotonic() - start, 1)
    finally:
        stop.set()
        facts["left_running"] = ray_cluster.stop_all(cluster)
        (work / "facts.json").write_text(json.dumps(facts, indent=1))


if __name__ == "__main__":
    _inside_namespace(Path(sys.argv[1]))
