"""The picture statistics' own arithmetic against the library functions it stands in for, and stacks of pictures
against the same pictures measured one by one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter
from scipy.ndimage import laplace

from lightly_assets.curation.measures import FLAT, MEASURES, laplacian, measure
from lightly_assets_tests import EXAMPLE_DATA
from lightly_assets_tests.statistics import picture_stats


def _photo(size: tuple[int, int] = (480, 360)) -> Image.Image:
    return Image.open(EXAMPLE_DATA / "images_weak_labels" / "cats" / "chelsea-0.jpg").convert("RGB").resize(size)


def one_picture(ycbcr: np.ndarray) -> list[float]:
    """The statistics of one picture, written out with numpy's and SciPy's own functions (the module's docstring)."""
    y = ycbcr[..., 0]
    hist = np.bincount(y.reshape(-1), minlength=256).astype(np.float64)
    cdf = np.cumsum(hist) / hist.sum()
    p = hist[hist > 0] / hist.sum()
    chroma = np.maximum(np.abs(ycbcr[..., 1].astype(int) - 128), np.abs(ycbcr[..., 2].astype(int) - 128))
    chroma_cdf = np.cumsum(np.bincount(chroma.reshape(-1), minlength=129)) / chroma.size
    spread = float(y.astype(np.float32).std())
    sharp = laplace(y.astype(np.float32)).std() / spread if spread >= FLAT and min(y.shape) >= 3 else np.nan
    return [
        float(np.searchsorted(cdf, 0.05)) / 255.0,
        float(np.searchsorted(cdf, 0.95)) / 255.0,
        float(np.searchsorted(chroma_cdf, 0.99)) / 255.0,
        float(-(p * np.log2(p)).sum() / 8.0),
        float(sharp),
    ]


def pictures(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """YCbCr pictures of one size, each a different kind: noise, a blurred scene, flat, grey, dark, nearly flat."""
    rng = np.random.default_rng(seed)
    w, h = size
    noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    scene = Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2))
    flat = np.full((h, w, 3), (90, 120, 30), np.uint8)
    nearly_flat = (flat + (rng.random((h, w, 1)) < 0.01)).astype(np.uint8)
    rgb = [noise, np.asarray(scene), flat, np.repeat(noise[..., :1], 3, axis=2), noise // 16, nearly_flat]
    return np.stack([np.asarray(Image.fromarray(a).convert("YCbCr")) for a in rgb])


@pytest.mark.parametrize("size", [(64, 48), (256, 192), (3, 3), (200, 3), (64, 2), (1, 1)])
def test_a_stack_is_measured_as_each_picture_alone_to_the_bit(size: tuple[int, int]) -> None:
    stack = pictures(size, seed=size[0])
    expected = np.array([one_picture(picture) for picture in stack])
    got = measure(stack)
    assert got.shape == (len(stack), len(MEASURES)) and got.dtype == np.float64
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.array_equal(np.concatenate([measure(stack[i : i + 1]) for i in range(len(stack))]), got, equal_nan=True)


def test_statistics_say_what_a_picture_is_like() -> None:
    def stats(image: Image.Image) -> dict:
        return picture_stats(np.asarray(image.convert("YCbCr")), *image.size)

    sharp, blurred = stats(_photo((256, 192))), stats(_photo((256, 192)).filter(ImageFilter.GaussianBlur(3)))
    assert blurred["sharpness"] < 0.5 * sharp["sharpness"]
    assert stats(ImageEnhance.Brightness(_photo()).enhance(0.1))["lum_p95"] < 0.1
    assert stats(Image.blend(_photo(), Image.new("RGB", (480, 360), "white"), 0.85))["lum_p05"] > 0.85
    assert stats(_photo().convert("L"))["chroma_p99"] == 0.0 and sharp["chroma_p99"] > 0.05
    flat = stats(Image.new("RGB", (64, 64), (90, 120, 30)))
    assert flat["entropy"] == 0.0 and np.isnan(flat["sharpness"])  # no structure: not blurry, low information


def test_real_photos_in_a_stack_are_measured_as_one_by_one(real_media: dict[str, Path]) -> None:
    paths = sorted(real_media["opencv-doc"].rglob("*.jpg"))[:24]
    stack = np.stack([np.asarray(Image.open(p).convert("YCbCr").resize((96, 72), Image.Resampling.BOX)) for p in paths])
    expected = np.array([one_picture(picture) for picture in stack])
    assert np.array_equal(measure(stack), expected, equal_nan=True)


@pytest.mark.parametrize("shape", [(48, 64), (192, 256), (3, 3), (3, 200), (300, 4)])
def test_the_laplacian_is_scipy_s_to_the_bit(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0])
    y = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)[..., 0]  # a plane of YCbCr: not contiguous
    ours, theirs = laplacian(y), laplace(y.astype(np.float32))
    assert ours.dtype == np.float32 and np.array_equal(ours, theirs) and ours.std() == theirs.std()
    stacked = rng.integers(0, 256, (4, *shape), dtype=np.uint8)
    assert all(
        np.array_equal(a, laplace(b.astype(np.float32))) for a, b in zip(laplacian(stacked), stacked, strict=True)
    )


def test_the_laplacian_of_real_photos_is_scipy_s(real_media: dict[str, Path]) -> None:
    for path in sorted(real_media["opencv-doc"].rglob("*.jpg"))[:10]:
        y = np.asarray(Image.open(path).convert("L").reduce(2))
        assert np.array_equal(laplacian(y), laplace(y.astype(np.float32))), path
