"""The arithmetic of the picture statistics, for a stack of pictures of one size at once.

Why stacks: a small picture's statistics (a 64x48 JPEG: 3,072 pixels) are some twenty numpy calls of a few
microseconds each, which cost more than their arithmetic. A stack takes the same calls for all its pictures
(3,000 such JPEGs, their hashes' grids apart: ~100 -> 32 us a picture). Each value is the one the picture would get
alone, to the bit: counts are integers, and every float reduction runs over one picture's own contiguous row, so
its additions come in the same order (the tests measure stacks against pictures one by one).

The statistics (all in [0, 1]):
- `lum_p05`, `lum_p95`: 5th / 95th percentile of the luminance (dark: even the bright parts are dark; light:
  even the dark parts are bright);
- `chroma_p99`: 99th percentile of max(|Cb - 0.5|, |Cr - 0.5|) (greyscale: no pixel has colour);
- `entropy`: Shannon entropy of the 256-bin luminance histogram / 8 bits (low information: few distinct tones);
- `sharpness`: std of the Laplacian / std of the luminance (blur: little high-frequency detail relative to the
  picture's contrast; independent of brightness and contrast); NaN where the picture is flat or under 3 px.
"""

from __future__ import annotations

import numpy as np

MEASURES = ["lum_p05", "lum_p95", "chroma_p99", "entropy", "sharpness"]
FLAT = 1.0  # luminance std (0..255) below which a picture has no structure to be sharp or blurry
LEVELS = 256  # of a uint8 channel
CHROMA_LEVELS = 129  # max(|Cb - 128|, |Cr - 128|) is 0..128


def measure(ycbcr: np.ndarray) -> np.ndarray:
    """The (n, len(MEASURES)) float64 statistics of n YCbCr uint8 pictures of one size, (n, height, width, 3)."""
    n, height, width, _ = ycbcr.shape
    y = ycbcr[..., 0]
    lum = counts(y.reshape(n, -1), LEVELS)
    cb, cr = ycbcr[..., 1].astype(np.int16), ycbcr[..., 2].astype(np.int16)
    chroma = counts(np.maximum(np.abs(cb - 128), np.abs(cr - 128)).reshape(n, -1), CHROMA_LEVELS)
    columns = [
        quantile_levels(lum, 0.05) / 255.0,
        quantile_levels(lum, 0.95) / 255.0,
        quantile_levels(chroma, 0.99) / 255.0,
        entropy(lum) / 8.0,
        sharpness(y),
    ]
    return np.stack(columns, axis=1).reshape(n, len(MEASURES))


def counts(values: np.ndarray, levels: int) -> np.ndarray:
    """(n, levels) int64: how often each level occurs in each row of an (n, m) array, in one `bincount`."""
    n = len(values)
    shifted = values + (np.arange(n, dtype=np.intp) * levels)[:, None]
    return np.bincount(shifted.reshape(-1), minlength=n * levels).reshape(n, levels)


def quantile_levels(histograms: np.ndarray, fraction: float) -> np.ndarray:
    """Per row, the first level at which the cumulative share reaches `fraction`: `searchsorted` of the CDF (the
    first entry >= fraction) is the number of entries below it, the CDF being sorted."""
    pixels = max(int(histograms[:1].sum()), 1)  # the same in every row: the pictures have one size
    return (np.cumsum(histograms, axis=1) / pixels < fraction).sum(axis=1)


def entropy(histograms: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of each row's histogram. Each row's terms are summed on their own, as numpy sums
    one picture's: a sum over a row padded with zeros would pair its additions differently."""
    present = histograms > 0
    share = histograms[present] / max(float(histograms[:1].sum()), 1.0)
    terms = -(share * np.log2(share))
    per_row = present.sum(axis=1)
    ends = np.cumsum(per_row)
    starts = ends - per_row
    return np.array([terms[a:b].sum() for a, b in zip(starts.tolist(), ends.tolist(), strict=True)], np.float64)


def sharpness(y: np.ndarray) -> np.ndarray:
    """Std of the Laplacian over std of the luminance, per picture of an (n, height, width) uint8 stack (float32
    arithmetic, as `scipy.ndimage.laplace` on a float32 picture and numpy's float32 std give)."""
    n, height, width = y.shape
    if min(height, width) < 3:
        return np.full(n, np.nan)
    spread = y.reshape(n, -1).astype(np.float32).std(axis=1)
    detail = laplacian(y).reshape(n, -1).std(axis=1)
    structured = spread >= FLAT
    ratio = detail / np.where(structured, spread, np.float32(1))
    return np.where(structured, ratio.astype(np.float64), np.nan)


def laplacian(y: np.ndarray) -> np.ndarray:
    """The Laplacian of uint8 pictures (..., height, width), edges repeated (float32): the values of
    `scipy.ndimage.laplace` on each one's float32 copy (sums of small integers are exact either way), 7x faster at
    256x192 px (78 against 557 us)."""
    y = y.astype(np.int16)
    out = y * np.int16(-4)
    out[..., 1:, :] += y[..., :-1, :]
    out[..., :1, :] += y[..., :1, :]
    out[..., :-1, :] += y[..., 1:, :]
    out[..., -1:, :] += y[..., -1:, :]
    out[..., 1:] += y[..., :-1]
    out[..., :1] += y[..., :1]
    out[..., :-1] += y[..., 1:]
    out[..., -1:] += y[..., -1:]
    return out.astype(np.float32)
