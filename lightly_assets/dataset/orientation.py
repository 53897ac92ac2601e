"""Upright pixels: photos turned by their EXIF orientation, video frames by their display rotation.

Why: phones store pictures as the sensor read them and record how to turn them (EXIF Orientation, a video's
display matrix). LightlyStudio and every browser or player show them turned, so an embedding of the stored,
sideways pixels is a worse embedding of what the user sees. `raw` keeps the stored pixels, which is what
lightly-embed embeds (its loader ignores both), for bit-level comparison with it.
"""

from __future__ import annotations

from typing import Literal

from PIL import Image, ImageOps

from lightly_assets.errors import LightlyAssetsError

Orientation = Literal["upright", "raw"]
ORIENTATIONS: tuple[str, ...] = ("upright", "raw")
_EXIF_ORIENTATION = 0x0112
_TURNS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


class OrientationError(LightlyAssetsError):
    """An orientation setting that is neither `upright` nor `raw`."""


def check_orientation(value: str) -> Orientation:
    if value not in ORIENTATIONS:
        raise OrientationError(f"orientation must be one of {', '.join(ORIENTATIONS)}, got {value!r}")
    return value  # type: ignore[return-value]


def exif_upright(image: Image.Image) -> Image.Image:
    """The image as viewers show it; the same object when its EXIF says it is already upright (no copy)."""
    if image.getexif().get(_EXIF_ORIENTATION, 1) in (None, 1):
        return image
    return ImageOps.exif_transpose(image)


def display_upright(image: Image.Image, rotation: float | None) -> Image.Image:
    """A decoded video frame turned by its display rotation (PyAV's `frame.rotation`: degrees counter-clockwise).

    PIL turns counter-clockwise for positive angles too; checked against the ffmpeg command line's autorotation.
    Quarter turns are exact transposes; another angle (rare) is rotated with expansion.
    """
    if not rotation:
        return image
    degrees = round(rotation) % 360
    if degrees == 0:
        return image
    if degrees in _TURNS:
        return image.transpose(_TURNS[degrees])
    return image.rotate(rotation, expand=True, resample=Image.Resampling.BILINEAR)
