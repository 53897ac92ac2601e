"""Pictures for the Dagster UI (the embeddings' 2-D projection, the training loss), drawn with Pillow.

No plotting library: a `Canvas` is a white image with a framed plot area into which data coordinates are
scaled, and that is all these plots need. One palette, so a weak label has the same colour everywhere.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]
PALETTE: list[Colour] = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip
# PALETTE's colours by name, for a legend in Markdown (words, since not every browser has colour emoji).
COLOUR_NAMES = ["blue", "orange", "green", "red", "purple", "brown", "pink", "grey", "olive", "cyan"]


def colour(label: int) -> Colour:
    return PALETTE[int(label) % len(PALETTE)]


class Canvas:
    """A white `size` image whose plot area is `box` (left, top, right, bottom), framed in `outline`."""

    def __init__(self, size: tuple[int, int], box: tuple[int, int, int, int], outline: Colour) -> None:
        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image)
        self.box = box
        self.draw.rectangle(list(box), outline=outline)

    def to_pixels(self, xy: np.ndarray, pad: int = 0) -> np.ndarray:
        """Each column's min..max onto the plot area less `pad` pixels, y upwards; a constant column sits at 0."""
        left, top, right, bottom = self.box
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        px = left + pad + (xy[:, 0] - lo[0]) / span[0] * (right - left - 2 * pad)
        py = bottom - pad - (xy[:, 1] - lo[1]) / span[1] * (bottom - top - 2 * pad)
        return np.stack([px, py], axis=1)

    def dots(self, pixels: np.ndarray, fills: list[Colour], radius: float) -> None:
        for (x, y), fill in zip(pixels.tolist(), fills, strict=True):
            self.draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill)

    def polyline(self, pixels: np.ndarray, fill: Colour, width: int) -> None:
        if len(pixels) > 1:
            self.draw.line([tuple(p) for p in pixels.tolist()], fill=fill, width=width)

    def fit(self, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> str:
        """Shorten `text` with an ellipsis until it fits `width` pixels."""
        if self.draw.textlength(text, font=font) <= width:
            return text
        while text and self.draw.textlength(text + "…", font=font) > width:
            text = text[:-1]
        return text + "…"

    def png(self, optimize: bool = False) -> bytes:
        out = io.BytesIO()
        self.image.save(out, format="PNG", optimize=optimize)
        return out.getvalue()


def loss_curve_png(losses: list[float], width: int = 480, height: int = 240) -> bytes:
    """Mean loss per epoch as a line plot with its range (PNG bytes)."""
    pad = 28
    canvas = Canvas((width, height), (pad, pad // 2, width - pad // 2, height - pad), outline=(180, 180, 180))
    values = np.asarray(losses, dtype=np.float64)
    black = (0, 0, 0)
    if len(values):
        points = canvas.to_pixels(np.stack([np.arange(len(values), dtype=np.float64), values], axis=1))
        canvas.polyline(points, fill=PALETTE[0], width=2)
        canvas.dots(points, [PALETTE[0]] * len(points), radius=3)
        canvas.draw.text((pad + 4, pad // 2 + 2), f"max {values.max():.4f}", fill=black)
        canvas.draw.text((pad + 4, height - pad - 14), f"min {values.min():.4f}", fill=black)
    canvas.draw.text((pad, height - pad + 6), f"loss per epoch (1..{len(values)})", fill=black)
    return canvas.png()
