"""Shared test helpers: images and videos made on the fly, free loopback ports, and image-folder fixtures."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("LIGHTLY_STUDIO_ANALYTICS_ENABLED", "false")
# Nothing downloads at test time: the pretrained weights come from an empty hub cache and a refused local URL
# (port 9 is closed here), so every run falls back to random weights in milliseconds unless a test serves a file.
os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="lightly-assets-torch-home-")
# Converted OpenVINO models: one cache for the session (its subprocesses too), never the user's.
os.environ["LIGHTLY_ASSETS_ENGINE_CACHE"] = tempfile.mkdtemp(prefix="lightly-assets-engine-cache-")
os.environ["LIGHTLY_ASSETS_PRETRAINED_URL"] = "http://127.0.0.1:9/offline/no-pretrained-weights-in-tests.pth"

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DATA = REPO / "data"


def make_image(
    path: Path, seed: int = 0, size: tuple[int, int] = (32, 24), fill: tuple[int, int, int] | None = None
) -> Path:
    """A small RGB image (noise from `seed`, or one `fill` colour), saved in the format its extension names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fill is None:
        arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    else:
        arr = np.full((size[1], size[0], 3), fill, dtype=np.uint8)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}.get(
        path.suffix.lower(), "PNG"
    )
    Image.fromarray(arr).save(path, format=fmt)
    return path


def make_video(path: Path, n_frames: int = 10, size: tuple[int, int] = (32, 32), codec: str = "mpeg4") -> Path:
    """A short video at 10 fps whose frame i is a flat grey of shade 20*i (mod 256), so frames differ."""
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n_frames):
            pixels = np.full((height, width, 3), (20 * i) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (servers in tests bind loopback only)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def image_tree(tmp_path: Path):
    """Build a folder of images from a list of relative paths."""

    def build(names: list[str], root: str = "ds") -> Path:
        base = tmp_path / root
        for i, name in enumerate(names):
            make_image(base / name, seed=i)
        return base

    return build
