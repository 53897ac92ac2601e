"""The 2-D picture of the embeddings: a real PNG with title, axes and legend, coloured by label, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lightly_assets.embedding.projection import PALETTE, SIZE, legend, legend_markdown, pca_2d, write_projection


def _two_clusters() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    matrix = np.concatenate([rng.normal(0, 0.1, (50, 8)), rng.normal(5, 0.1, (50, 8))]).astype(np.float32)
    return matrix, np.array([0] * 50 + [1] * 50)


def test_pca_separates_two_clusters_and_the_png_uses_label_colours(tmp_path: Path) -> None:
    matrix, labels = _two_clusters()
    xy, rows = pca_2d(matrix)
    assert len(rows) == 100 and abs(xy[:50, 0].mean() - xy[50:, 0].mean()) > 10
    path = write_projection(matrix, labels, tmp_path / "out" / "p.png", {0: "cats", 1: "dogs"}, "ds: 100 samples")
    with Image.open(path) as img:
        assert img.size == SIZE
        plot = img.convert("RGB").crop((0, 0, SIZE[0] * 2 // 3, SIZE[1]))  # left of the legend
        colours = {c for _, c in plot.getcolors(maxcolors=100_000)}
    assert PALETTE[0] in colours and PALETTE[1] in colours  # label 0 and label 1 drawn as points
    assert [p.name for p in path.parent.iterdir()] == ["p.png"]


def test_legend_names_every_label_with_its_count_and_colour(tmp_path: Path) -> None:
    _, labels = _two_clusters()
    assert legend(labels, {0: "cats", 1: "dogs"}) == [(0, "cats", 50), (1, "dogs", 50)]
    assert legend_markdown(labels, {0: "cats", 1: "dogs"}) == "**blue** cats (50) · **orange** dogs (50)"
    many = np.arange(30)
    assert legend_markdown(many, limit=12).endswith("… +18 more")
    assert legend(np.array([3, 3]), None) == [(3, "3", 2)]  # no name known: the label number


def test_legend_swatches_sit_beside_the_plot(tmp_path: Path) -> None:
    labels = np.arange(12)  # more labels than colours: the palette repeats, the legend still lists each
    matrix = np.random.default_rng(1).normal(size=(12, 4)).astype(np.float32)
    path = write_projection(matrix, labels, tmp_path / "p.png", {i: f"label {i}" for i in range(12)}, "t")
    with Image.open(path) as img:
        legend_strip = img.convert("RGB").crop((SIZE[0] * 2 // 3, 0, SIZE[0], SIZE[1]))
        colours = {c for _, c in legend_strip.getcolors(maxcolors=100_000)}
    assert set(PALETTE) <= colours


def test_degenerate_inputs_still_draw(tmp_path: Path) -> None:
    path = write_projection(np.ones((1, 4), dtype=np.float32), np.array([3]), tmp_path / "one.png")
    assert Image.open(path).size == SIZE
