"""Which weights embed: pretrained by default from a served file through torch's hub cache, like lightly-embed.

Every URL is a server this test starts on 127.0.0.1; nothing is downloaded from the internet.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from lightly_assets.embedding.factory import load_model
from lightly_assets.embedding.families.lightly import build_lightly_model
from lightly_assets.embedding.network import LightlyArch
from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples
from lightly_assets.embedding.weights import (
    DEFAULT_ZOO_KEY,
    WeightsError,
    choose_weights,
    zoo_url,
)
from lightly_assets_tests import OFFLINE_PRETRAINED_URL
from lightly_assets_tests.media import blocky_image
from lightly_assets_tests.reference import lightly_embed
from lightly_assets_tests.tables import frame_index_for

pytestmark = pytest.mark.lightly_tools  # lightly's own classes build the checkpoints

SIZE = 16
DEFAULT_ARCH = LightlyArch()
ZOO_NAME = Path(zoo_url(DEFAULT_ZOO_KEY)).name  # lightly-embed looks for this basename in the hub cache


def _checkpoint(path: Path, arch: LightlyArch = DEFAULT_ARCH, seed: int = 3) -> Path:
    """A file shaped like the zoo's: {"state_dict": {"model.backbone.*", "model.projection_head.*"}}."""
    torch.manual_seed(seed)
    net = build_lightly_model(arch)
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, path)
    return path


class _Server:
    """An HTTP server on a free 127.0.0.1 port: /good/ serves the file, /slow/ stalls, /truncated/ cuts it short."""

    def __init__(self, payload: bytes) -> None:
        self.payload, self.hits = payload, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                """Quiet: pytest's output stays readable."""

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.hits.append(self.path)
                kind = self.path.split("/")[1]
                if kind == "slow":
                    time.sleep(3)
                body = b"<html>not found</html>" if kind == "html" else server.payload
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2] if kind == "truncated" else body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting, as it should

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, kind: str, name: str = ZOO_NAME) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}/{name}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def served(tmp_path: Path, monkeypatch) -> Iterator[tuple[_Server, Path]]:
    """A served checkpoint file and an empty torch hub cache (TORCH_HOME) for this test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    ckpt = _checkpoint(tmp_path / "served.pth")
    server = _Server(ckpt.read_bytes())
    yield server, ckpt
    server.stop()


def _cache(tmp_path: Path, name: str = ZOO_NAME) -> Path:
    return tmp_path / "torch_home" / "hub" / "checkpoints" / name


def test_download_then_offline_cache_and_same_vectors_as_lightly_embed(tmp_path: Path, served) -> None:
    server, ckpt = served
    weights = choose_weights(url=server.url("good"))
    assert weights.source == "pretrained" and weights.path == _cache(tmp_path)
    assert weights.path.read_bytes() == ckpt.read_bytes()
    assert weights.sha256 == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert weights.url == server.url("good") and weights.zoo_key == DEFAULT_ZOO_KEY
    assert server.hits == [f"/good/{ZOO_NAME}"]
    assert [p.name for p in weights.path.parent.iterdir()] == [ZOO_NAME]  # no temporary file left
    server.stop()  # from now on there is no network: the cache serves
    again = choose_weights(url=server.url("good"))
    assert again == weights and server.hits == [f"/good/{ZOO_NAME}"]

    names = ["a/x.jpg", "a/y.png", "b/z.jpg"]
    for i, name in enumerate(names):
        blocky_image(tmp_path / "data" / name, 50 + 10 * i, 40, seed=i)
    ours = embed_samples(
        frame_index_for(tmp_path / "data", names),
        tmp_path / "data",
        load_model(again, input_size=SIZE, precision="fp32"),  # bit-level agreement with lightly needs fp32
        options=EmbedOptions(batch_size=2, draft=False),
    )
    # lightly-embed with no checkpoint: its zoo URL, served from the same hub cache (TORCH_HOME), nothing fetched
    expected, _, filenames = lightly_embed(tmp_path / "data", "", SIZE)
    assert ours.filenames == filenames == names
    np.testing.assert_allclose(ours.matrix, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    random = load_model(None, input_size=SIZE)
    assert not np.allclose(random.embed(np.zeros((1, SIZE, SIZE, 3), np.uint8)), expected[:1], atol=1e-3)


def test_weights_order(tmp_path: Path, served) -> None:
    server, _ = served
    url = server.url("good")
    named, trained = _checkpoint(tmp_path / "named.ckpt", seed=1), _checkpoint(tmp_path / "trained.ckpt", seed=2)
    assert choose_weights(checkpoint=named, trained=trained, url=url).source == "checkpoint"
    chosen = choose_weights(trained=trained, url=url)
    assert (chosen.source, chosen.path) == ("trained", trained)
    assert chosen.sha256 == hashlib.sha256(trained.read_bytes()).hexdigest()
    assert choose_weights(trained=tmp_path / "not-trained-yet.ckpt", url=url).source == "pretrained"
    assert choose_weights(pretrained=False, url=url).random and server.hits == [f"/good/{ZOO_NAME}"]


def test_unreachable_slow_truncated_or_not_a_checkpoint_falls_back_loudly(tmp_path: Path, served) -> None:
    server, _ = served
    started = time.monotonic()
    refused = choose_weights(url=OFFLINE_PRETRAINED_URL)  # a closed port on 127.0.0.1
    assert refused.random and "pretrained download failed" in refused.note and "127.0.0.1:9" in refused.note
    assert time.monotonic() - started < 2
    started = time.monotonic()
    slow = choose_weights(url=server.url("slow"), stall_timeout=0.5)
    assert time.monotonic() - started < 2.5
    assert slow.random and "timed out" in slow.note and slow.url == server.url("slow")
    truncated = choose_weights(url=server.url("truncated"))
    assert truncated.random and "truncated download" in truncated.note
    html = choose_weights(url=server.url("html"))
    assert html.random and "not a PyTorch checkpoint" in html.note
    folder = _cache(tmp_path).parent
    assert not folder.exists() or list(folder.iterdir()) == []  # nothing half-written is kept
    model = load_model(html, input_size=SIZE)
    assert model.random_init


def test_cached_file_that_is_not_a_checkpoint_or_another_architecture_is_an_error(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/models/whattolabel-test.pth"  # never contacted: the cache has the file
    cached = _cache(tmp_path, "whattolabel-test.pth")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x03\x04 half a zip")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
        weights = choose_weights(url=url)
        assert weights.source == "pretrained" and weights.path == cached
        with pytest.raises(WeightsError, match=rf"{cached}: cached pretrained weights are not a readable"):
            load_model(weights, input_size=SIZE)
        _checkpoint(cached, LightlyArch(name="resnet-9", num_ftrs=16))
        with pytest.raises(WeightsError, match=rf"{cached}: cached pretrained weights do not fit {DEFAULT_ZOO_KEY}"):
            load_model(choose_weights(url=url), input_size=SIZE)


@pytest.mark.e2e  # file_index..embeddings through Dagster twice, pretrained then trained weights (~20 s)
def test_embeddings_asset_pretrained_then_trained_with_provenance_and_quality(tmp_path: Path, served) -> None:
    """Through Dagster: the served zoo file embeds, then the dataset's trained checkpoint takes over."""
    from dagster import DagsterInstance, materialize

    from lightly_assets.defs.embedding import embeddings
    from lightly_assets.defs.indexing import file_index, frame_index
    from lightly_assets.defs.partitions import datasets_partitions
    from lightly_assets.defs.resources import EmbeddingModelResource, RayClusterResource, StorageResource
    from lightly_assets_tests import EXAMPLE_DATA

    server, ckpt = served
    out = tmp_path / "out"
    resources = {
        "storage": StorageResource(data_dir=str(EXAMPLE_DATA), output_dir=str(out)),
        "embedding_model": EmbeddingModelResource(input_size=SIZE, pretrained_url=server.url("good")),
        "ray_cluster": RayClusterResource(),
    }

    def run(instance) -> tuple[dict, dict]:
        result = materialize(
            [file_index, frame_index, embeddings], instance=instance, partition_key="images_weak_labels",
            resources=resources,
        )  # fmt: skip
        assert result.success
        (mat,) = result.asset_materializations_for_node("embeddings")
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        return {k: v.value for k, v in mat.metadata.items()}, checks

    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        instance.add_dynamic_partitions(datasets_partitions.name, ["images_weak_labels"])
        meta, checks = run(instance)
        expected = f"pretrained: Lightly's {DEFAULT_ZOO_KEY} from {server.url('good')}, cached at {_cache(tmp_path)}"
        assert meta["weights"] == expected
        assert meta["weights_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
        assert checks["trained_weights"].passed
        assert meta["knn_samples"] == 13 and 0 <= meta["knn_agreement"] <= 1
        assert isinstance(meta["knn_agreement_random_network"], float) and 0 < meta["knn_agreement_chance"] < 1
        assert checks["knn_better_than_chance"].metadata["applicable"].value is True
        assert (out / "images_weak_labels" / "embedding_cache_random.npz").is_file()

        _checkpoint(out / "images_weak_labels" / "embedding_model.ckpt", seed=11)  # as `train` leaves it
        meta, checks = run(instance)
        trained = out / "images_weak_labels" / "embedding_model.ckpt"
        assert meta["weights"] == f"trained on this dataset: {trained}"
        assert meta["reused"] == 0 and meta["embedded"] == 13  # new weights: new cache key
