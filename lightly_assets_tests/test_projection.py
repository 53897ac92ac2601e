"""The 2-D picture of the embeddings: a real PNG, coloured by label, written without leftovers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lightly_assets.embedding.projection import pca_2d, write_projection


def test_pca_separates_two_clusters_and_the_png_uses_label_colours(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    matrix = np.concatenate([rng.normal(0, 0.1, (50, 8)), rng.normal(5, 0.1, (50, 8))]).astype(np.float32)
    labels = np.array([0] * 50 + [1] * 50)
    xy, rows = pca_2d(matrix)
    assert len(rows) == 100 and abs(xy[:50, 0].mean() - xy[50:, 0].mean()) > 10
    path = write_projection(matrix, labels, tmp_path / "out" / "p.png")
    with Image.open(path) as img:
        colours = {c for _, c in img.convert("RGB").getcolors(maxcolors=100_000)}
    assert (31, 119, 180) in colours and (255, 127, 14) in colours  # label 0 and label 1
    assert [p.name for p in path.parent.iterdir()] == ["p.png"]


def test_degenerate_inputs_still_draw(tmp_path: Path) -> None:
    path = write_projection(np.ones((1, 4), dtype=np.float32), np.array([3]), tmp_path / "one.png")
    assert Image.open(path).size == (480, 480)
