"""A 2-D picture of the embeddings (PCA), coloured by weak label, for a quick look in the Dagster UI."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lightly_assets.atomic import write_bytes_atomic

_PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip


def pca_2d(matrix: np.ndarray, max_points: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Project onto the two main axes; a seeded subsample keeps it cheap for big datasets. Returns (xy, rows)."""
    n = len(matrix)
    rows = np.arange(n)
    if n > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    x = matrix[rows].astype(np.float64)
    x -= x.mean(axis=0)
    if len(x) < 2 or not np.isfinite(x).all():
        return np.zeros((len(x), 2)), rows
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    axes = vt[:2].T if vt.shape[0] >= 2 else np.pad(vt.T, ((0, 0), (0, 1)))
    return x @ axes, rows


def render_png(xy: np.ndarray, labels: np.ndarray, size: int = 480) -> bytes:
    """Scatter plot as PNG bytes, drawn with Pillow so no plotting library is needed."""
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    pad = 12
    if len(xy):
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        pts = pad + (xy - lo) / span * (size - 2 * pad)
        for (px, py), label in zip(pts, labels, strict=True):
            colour = _PALETTE[int(label) % len(_PALETTE)]
            draw.ellipse([px - 2, size - py - 2, px + 2, size - py + 2], fill=colour)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def write_projection(matrix: np.ndarray, labels: np.ndarray, path: Path) -> Path:
    """Write the PCA picture to `path` (atomically) and return it."""
    xy, rows = pca_2d(matrix)
    data = render_png(xy, np.asarray(labels)[rows])
    return write_bytes_atomic(path, data)
