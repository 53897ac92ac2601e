"""A 2-D picture of the embeddings (PCA), coloured by weak label, for a quick look in the Dagster UI.

Drawn on a `plots.Canvas` (Pillow): a title, the two principal axes with their share of the variance, and a legend
that names each weak label with its colour and sample count.
"""

from __future__ import annotations

import io
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


THUMBNAIL_SIZE = (180, 110)
THUMBNAIL_BYTES = 640  # base64 makes it ~850 characters: inline in Dagster's metadata table (limit 1000)
# (points, size) tried in order until the PNG fits: fewer points (a seeded subsample) before a smaller picture
_THUMBNAIL_STEPS = [(None, THUMBNAIL_SIZE), (120, THUMBNAIL_SIZE), (60, THUMBNAIL_SIZE), (60, (140, 86)),
                    (30, (120, 74))]  # fmt: skip


def thumbnail_png(xy: np.ndarray, labels: np.ndarray, max_bytes: int = THUMBNAIL_BYTES, seed: int = 0) -> bytes:
    """A small scatter with no text, as a palette PNG of at most about `max_bytes`, for Dagster's inline view.

    Palette images (4 bits per pixel for ≤ 16 colours) of flat dots on white compress to a fraction of an RGB
    picture; a large dataset's scatter is noise to a compressor, so it is drawn from a seeded subsample. The
    full picture with axes and legend is `render_png`'s.
    """
    labels = np.asarray(labels)
    data = b""
    for points, size in _THUMBNAIL_STEPS:
        rows = np.arange(len(xy))
        if points is not None and len(xy) > points:
            rows = np.sort(np.random.default_rng(seed).choice(len(xy), points, replace=False))
        data = _thumbnail(xy[rows], labels[rows], size)
        if len(data) <= max_bytes:
            break
    return data


def _thumbnail(xy: np.ndarray, labels: np.ndarray, size: tuple[int, int]) -> bytes:
    width, height = size
    img = Image.new("P", size, 0)
    flat = [255, 255, 255, 200, 200, 200] + [v for c in PALETTE for v in c]
    img.putpalette(flat + [0] * (768 - len(flat)))
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0, width - 1, height - 1], outline=1)
    if len(xy):
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        pad = 5
        px = pad + (xy[:, 0] - lo[0]) / span[0] * (width - 2 * pad)
        py = height - pad - (xy[:, 1] - lo[1]) / span[1] * (height - 2 * pad)
        r = 2 if len(xy) < 500 else 1
        for x, y, label in zip(px, py, labels, strict=True):
            draw.ellipse([x - r, y - r, x + r, y + r], fill=2 + int(label) % len(PALETTE))
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True, bits=4)
    return out.getvalue()


def write_projection(
    matrix: np.ndarray,
    labels: np.ndarray,
    path: Path,
    names: Mapping[int, str] | None = None,
    title: str = "",
) -> Path:
    """Write the PCA picture to `path` (atomically) and return it."""
    return write_projections(matrix, labels, path, names, title)[0]


def write_projections(
    matrix: np.ndarray,
    labels: np.ndarray,
    path: Path,
    names: Mapping[int, str] | None = None,
    title: str = "",
) -> tuple[Path, bytes]:
    """The full PCA picture written to `path` (atomically), and its thumbnail's PNG bytes, from one projection."""
    p = project(matrix)
    shown = np.asarray(labels)[p.rows]
    data = render_png(p.xy, shown, names, title, p.explained)
    return write_bytes_atomic(path, data), thumbnail_png(p.xy, shown)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_").replace("\n", " ")
