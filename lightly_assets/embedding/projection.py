"""A 2-D picture of the embeddings (PCA), coloured by weak label, for a quick look in the Dagster UI.

Drawn on a `plots.Canvas` (Pillow): a title, the two principal axes with their share of the variance, and a legend
that names each weak label with its colour and sample count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lightly_assets.atomic import write_bytes_atomic
from lightly_assets.plots import COLOUR_NAMES, PALETTE, Canvas, colour

__all__ = ["PALETTE", "colour", "legend", "legend_markdown", "pca_2d", "project", "render_png", "write_projection"]
SIZE = (800, 560)
LEGEND_ROWS = 24


@dataclass(frozen=True)
class Projection:
    """The 2-D coordinates of (a subsample of) the rows, and the share of variance each axis explains."""

    xy: np.ndarray
    rows: np.ndarray
    explained: tuple[float, float]


def pca_2d(matrix: np.ndarray, max_points: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Project onto the two main axes; a seeded subsample keeps it cheap for big datasets. Returns (xy, rows)."""
    p = project(matrix, max_points, seed)
    return p.xy, p.rows


def project(matrix: np.ndarray, max_points: int = 20_000, seed: int = 0) -> Projection:
    n = len(matrix)
    rows = np.arange(n)
    if n > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
    x = matrix[rows].astype(np.float64)
    x -= x.mean(axis=0)
    if len(x) < 2 or not np.isfinite(x).all():
        return Projection(np.zeros((len(x), 2)), rows, (0.0, 0.0))
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    axes = vt[:2].T if vt.shape[0] >= 2 else np.pad(vt.T, ((0, 0), (0, 1)))
    var = s**2
    total = float(var.sum()) or 1.0
    explained = (float(var[0]) / total, float(var[1]) / total if len(var) > 1 else 0.0)
    return Projection(x @ axes, rows, explained)


def legend(labels: np.ndarray, names: Mapping[int, str] | None = None) -> list[tuple[int, str, int]]:
    """(label, name, count) per weak label present, in label order."""
    values, counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    names = names or {}
    return [(int(v), str(names.get(int(v), v)), int(c)) for v, c in zip(values, counts, strict=True)]


def legend_markdown(labels: np.ndarray, names: Mapping[int, str] | None = None, limit: int = 12) -> str:
    """The legend as one short Markdown line: colour, name and count per label."""
    entries = legend(labels, names)
    parts = [f"**{COLOUR_NAMES[label % len(COLOUR_NAMES)]}** {_md(name)} ({n})" for label, name, n in entries[:limit]]
    if len(entries) > limit:
        parts.append(f"… +{len(entries) - limit} more")
    return " · ".join(parts)


def render_png(
    xy: np.ndarray,
    labels: np.ndarray,
    names: Mapping[int, str] | None = None,
    title: str = "",
    explained: tuple[float, float] = (0.0, 0.0),
    size: tuple[int, int] = SIZE,
) -> bytes:
    """Scatter plot with title, axes and a legend of weak-label names, as PNG bytes."""
    width, height = size
    font, small = ImageFont.load_default(size=16), ImageFont.load_default(size=13)
    entries = legend(labels, names)
    legend_w = min(260, width // 3)
    left, top, right, bottom = 40, 44, width - legend_w - 16, height - 36
    canvas = Canvas(size, (left, top, right, bottom), outline=(90, 90, 90))
    draw = canvas.draw
    draw.text((left, 12), canvas.fit(title, font, width - left - 12), fill="black", font=font)
    draw.text(((left + right) // 2, bottom + 8), f"PC 1 ({explained[0]:.0%} of variance)", fill="black", font=small,
              anchor="mt")  # fmt: skip
    axis = Image.new("RGBA", (bottom - top, 18), (255, 255, 255, 0))
    ImageDraw.Draw(axis).text(((bottom - top) // 2, 0), f"PC 2 ({explained[1]:.0%})", fill="black", font=small,
                              anchor="mt")  # fmt: skip
    canvas.image.paste(axis.rotate(90, expand=True), (left - 22, top), axis.rotate(90, expand=True))
    if len(xy):
        fills = [colour(int(label)) for label in labels]
        canvas.dots(canvas.to_pixels(xy, pad=8), fills, radius=3 if len(xy) < 2000 else 2)
    y = top
    for label, name, n in entries[:LEGEND_ROWS]:
        draw.rectangle([right + 16, y + 3, right + 28, y + 15], fill=colour(label))
        draw.text((right + 34, y), canvas.fit(f"{name} ({n})", small, legend_w - 40), fill="black", font=small)
        y += 20
    if len(entries) > LEGEND_ROWS:
        draw.text((right + 16, y), f"… +{len(entries) - LEGEND_ROWS} more labels", fill=(90, 90, 90), font=small)
    return canvas.png(optimize=True)


def write_projection(
    matrix: np.ndarray,
    labels: np.ndarray,
    path: Path,
    names: Mapping[int, str] | None = None,
    title: str = "",
) -> Path:
    """Write the PCA picture to `path` (atomically) and return it."""
    p = project(matrix)
    data = render_png(p.xy, np.asarray(labels)[p.rows], names, title, p.explained)
    return write_bytes_atomic(path, data)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_").replace("\n", " ")
