"""How a model wants its pixels: size, resize or crop, interpolation, normalisation.

Every model family states its own (`lightly-embed`: the whole image squeezed to s x s, bilinear, ImageNet
statistics; timm: its data config; torchvision: its weights' transforms; CLIP: its image preprocessing). The
pipeline decodes to uint8 RGB and calls `apply`; the engine (`engines/`) normalises with `mean` / `std`. Resizing is
PIL's (with its antialiasing), which is what torchvision's `Resize` does to a PIL image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Mode = Literal["stretch", "crop"]
_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class Preprocessing:
    """`stretch`: the whole image resized to height x width (lightly-embed, ONNX). `crop`: the shorter side resized
    to `resize` (aspect kept), then the centre height x width cut out (timm, torchvision, CLIP)."""

    height: int
    width: int
    mode: Mode = "stretch"
    resize: int = 0
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def stretch(cls, height: int, width: int | None = None, **kw) -> Preprocessing:
        return cls(height, width or height, "stretch", **kw)

    @classmethod
    def crop(cls, size: int, resize: int, **kw) -> Preprocessing:
        return cls(size, size, "crop", resize, **kw)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of what `apply` returns."""
        return self.height, self.width

    def draft_size(self) -> tuple[int, int]:
        """The smallest (w, h) that a JPEG may be draft-decoded to and still resize from more pixels than it keeps."""
        side = self.resize if self.mode == "crop" else max(self.height, self.width)
        return side, side

    def apply(self, image: Image.Image) -> np.ndarray:
        """RGB uint8 (height, width, 3) pixels of a PIL image, as the model's own transform would crop them."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        resample = _FILTERS.get(self.interpolation, Image.Resampling.BILINEAR)
        if self.mode == "stretch":
            if image.size != (self.width, self.height):
                image = image.resize((self.width, self.height), resample)
            return np.asarray(image)
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(self.resize * long / short)  # torchvision's Resize(int) arithmetic
        size = (self.resize, new_long) if w <= h else (new_long, self.resize)
        if size != (w, h):
            image = image.resize(size, resample)
        w, h = image.size
        top = int(round((h - self.height) / 2.0))
        left = int(round((w - self.width) / 2.0))
        if top < 0 or left < 0:  # torchvision pads a crop bigger than the image; the crop sizes here never are
            image = image.resize((max(w, self.width), max(h, self.height)), resample)
            top, left = max(top, 0), max(left, 0)
        return np.asarray(image.crop((left, top, left + self.width, top + self.height)))

    def describe(self) -> str:
        """One line for metadata, the run summary and the cache key."""
        stats = f"mean {_fmt(self.mean)} std {_fmt(self.std)}"
        if self.mode == "stretch":
            return f"whole image resized to {self.height}x{self.width} {self.interpolation}, {stats}"
        crop = f"centre crop {self.height}x{self.width}"
        return f"shorter side resized to {self.resize} {self.interpolation}, {crop}, {stats}"


def crop_resize(size: int, crop_pct: float) -> int:
    """timm's scale size for a centre crop: floor(size / crop_pct)."""
    return int(math.floor(size / crop_pct))


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
