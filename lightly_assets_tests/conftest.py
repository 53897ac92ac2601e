"""Shared fixtures: small image folders made on the fly."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("LIGHTLY_STUDIO_ANALYTICS_ENABLED", "false")
# Nothing downloads at test time: the pretrained weights come from an empty hub cache and a refused local URL
# (port 9 is closed here), so every run falls back to random weights in milliseconds unless a test serves a file.
os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="lightly-assets-torch-home-")
os.environ["LIGHTLY_ASSETS_PRETRAINED_URL"] = "http://127.0.0.1:9/offline/no-pretrained-weights-in-tests.pth"

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DATA = REPO / "data"


def make_image(path: Path, seed: int = 0, size: tuple[int, int] = (32, 24)) -> Path:
    """A small noisy RGB image, saved in the format its extension names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}.get(
        path.suffix.lower(), "PNG"
    )
    Image.fromarray(arr).save(path, format=fmt)
    return path


@pytest.fixture
def image_tree(tmp_path: Path):
    """Build a folder of images from a list of relative paths."""

    def build(names: list[str], root: str = "ds") -> Path:
        base = tmp_path / root
        for i, name in enumerate(names):
            make_image(base / name, seed=i)
        return base

    return build
