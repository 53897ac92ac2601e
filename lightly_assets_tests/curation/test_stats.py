"""The picture statistics' own arithmetic against the library functions it stands in for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import laplace

from lightly_assets.curation.stats import laplacian


@pytest.mark.parametrize("shape", [(48, 64), (192, 256), (3, 3), (3, 200), (300, 4)])
def test_the_laplacian_is_scipy_s_to_the_bit(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0])
    y = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)[..., 0]  # a plane of YCbCr: not contiguous
    ours, theirs = laplacian(y), laplace(y.astype(np.float32))
    assert ours.dtype == np.float32 and np.array_equal(ours, theirs) and ours.std() == theirs.std()


def test_the_laplacian_of_real_photos_is_scipy_s(real_media: dict[str, Path]) -> None:
    for path in sorted(real_media["opencv-doc"].rglob("*.jpg"))[:10]:
        y = np.asarray(Image.open(path).convert("L").reduce(2))
        assert np.array_equal(laplacian(y), laplace(y.astype(np.float32))), path
