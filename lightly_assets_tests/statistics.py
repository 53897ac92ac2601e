"""One picture's statistics by name, as tests read them (the step measures pictures in stacks, as arrays)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lightly_assets.curation.measures import measure
from lightly_assets.curation.stats import STATS, image_picture


def picture_stats(ycbcr: np.ndarray, width: int, height: int) -> dict:
    """The statistics of one picture (an (h, w, 3) uint8 YCbCr array at analysis size), by name."""
    return dict(zip(STATS, [width, height, *measure(ycbcr[np.newaxis])[0].tolist()], strict=True))


def image_stats(path: Path) -> dict:
    """The statistics of one image file, by name; raises whatever the decoder raises for a broken file."""
    picture = image_picture(path)
    return picture_stats(picture.ycbcr, picture.width, picture.height)
