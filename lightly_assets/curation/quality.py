"""Which samples have which problems: the per-sample statistics (stats.py) against thresholds, as scored issues.

Every issue has a score in [0, 1], higher is worse: 0.5 at its threshold, 1 at the extreme (a black picture is
`dark` at 1.0; a picture just under the threshold at ~0.5), so scores of different issues read alike.

The defaults hold on real photos: on the real-media corpus (~220 photos from cameras, test-image collections
and documentation, 64 px to 5640 px) with planted copies, `benchmarks/bench_data_issues.py` measures the recall
on planted problems and how many untouched photos are flagged. Why each value:
- `dark` 0.2: the 95th percentile of luminance under 20%: even the brightest parts are dark. Night shots with
  lit windows or a lamp keep a bright 5% and pass; an under-exposed frame does not.
- `light` 0.75: the 5th percentile over 75%: even the darkest parts are bright (washed out, over-exposed).
  Snow scenes keep their shadows; the brightest untouched corpus photo sits at 0.74.
- `grayscale` 0.02: 99% of pixels have under 2% colour (Cb/Cr within ~5 of 128): JPEG's chroma noise stays under
  it, a faint colour cast passes. On the corpus, 68 of the 71 pictures it flags have R, G and B within 8 levels
  everywhere (scans, test charts, B&W photos); the other 3 are near-grey.
- `low_information` 0.3: histogram entropy under 2.4 of 8 bits: a few tones only (blank, a flat colour, a lens
  cap, two-tone drawings such as chessboards, masks and text on white). Photos sit at 6-7.5 bits.
- `blurry` 0.12: at 256 px on the long side, the Laplacian's spread under 12% of the luminance's. Sharp photos
  sit at 0.2-2.5; a Gaussian blur of 1% of the picture's long side brings most under 0.11. Below 0.12 on the
  corpus are smooth gradients and wallpapers (no detail to be sharp); motion-blurred test photos sit at
  0.16-0.24. Flat pictures (no contrast) are never blurry: they are `low_information`.
- `odd_aspect_ratio` 3: the long side over three times the short one (panoramas, banners, strips).
- `odd_size`: the short side under 32 px (under half the network's 64-px input), or the picture's scale
  (square root of its area) over 10x above or below the dataset's median.
- `outlier` 6: k-NN distance (mean cosine distance to the 5 nearest others) more than 6 robust standard
  deviations (1.4826 MAD) above the median; only with trained weights, since random vectors have no neighbours.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from lightly_assets.atomic import atomic_output
from lightly_assets.columns import DATA_ISSUES_CSV
from lightly_assets.curation.errors import CurationError

ISSUES = (
    "broken", "blurry", "dark", "light", "grayscale", "low_information", "odd_aspect_ratio", "odd_size", "outlier",
)  # fmt: skip
COLUMNS = list(DATA_ISSUES_CSV)  # filenames,issue,score
OUTLIER_NEIGHBOURS = 5
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class Thresholds:
    """Where each issue starts (see the module docstring for why these values)."""

    dark: float = 0.2
    light: float = 0.75
    grayscale: float = 0.02
    low_information: float = 0.3
    blurry: float = 0.12
    odd_aspect_ratio: float = 3.0
    min_side: int = 32
    size_ratio: float = 10.0
    outlier: float = 6.0

    def check(self) -> Thresholds:
        for name in ("dark", "light", "grayscale", "low_information", "blurry"):
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0):
                raise CurationError(f"data_issues config: {name} must be in [0, 1], got {value}")
        for name in ("odd_aspect_ratio", "size_ratio"):
            if getattr(self, name) < 1.0:
                raise CurationError(f"data_issues config: {name} must be 1 or more, got {getattr(self, name)}")
        if self.min_side < 0 or self.outlier <= 0:
            raise CurationError("data_issues config: min_side must be 0 or more and outlier above 0")
        return self

    def describe(self) -> dict[str, float]:
        return asdict(self)


def _below(value: ArrayLike, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Flagged when value < threshold; 0.5 at the threshold, 1 at 0."""
    value = np.asarray(value, dtype=np.float64)
    flagged = np.nan_to_num(value, nan=np.inf) < threshold
    score = 1.0 - 0.5 * np.clip(value / threshold if threshold > 0 else 1.0, 0.0, 1.0)
    return flagged, score


def _above(value: ArrayLike, threshold: float, top: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Flagged when value > threshold; 0.5 at the threshold, 1 at `top`."""
    value = np.asarray(value, dtype=np.float64)
    flagged = np.nan_to_num(value, nan=-np.inf) > threshold
    score = 0.5 + 0.5 * np.clip((value - threshold) / max(top - threshold, 1e-9), 0.0, 1.0)
    return flagged, score


def _factor(value: ArrayLike, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Flagged when a ratio >= 1 exceeds threshold; 0.5 at the threshold, towards 1 as the ratio grows."""
    value = np.asarray(value, dtype=np.float64)
    flagged = np.nan_to_num(value, nan=0.0) > threshold
    return flagged, 1.0 - 0.5 * threshold / np.maximum(value, threshold)


def picture_issues(stats: pd.DataFrame, t: Thresholds) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per issue (flagged mask, score) over the rows of the statistics table; broken rows are never flagged."""
    ok = (stats["broken"].astype(str) == "").to_numpy()
    width = stats["width"].to_numpy(dtype=np.float64)
    height = stats["height"].to_numpy(dtype=np.float64)
    short, long = np.minimum(width, height), np.maximum(width, height)
    scale = np.sqrt(width * height)
    median = float(np.nanmedian(scale[ok])) if ok.any() else 1.0
    too_small, small_score = _below(short, t.min_side)
    off_scale, scale_score = _factor(np.maximum(scale / median, median / np.maximum(scale, 1e-9)), t.size_ratio)
    out = {
        "blurry": _below(stats["sharpness"], t.blurry),
        "dark": _below(stats["lum_p95"], t.dark),
        "light": _above(stats["lum_p05"], t.light),
        "grayscale": _below(stats["chroma_p99"], t.grayscale),
        "low_information": _below(stats["entropy"], t.low_information),
        "odd_aspect_ratio": _factor(long / np.maximum(short, 1.0), t.odd_aspect_ratio),
        "odd_size": (too_small | off_scale, np.maximum(np.where(too_small, small_score, 0), scale_score)),
    }
    if (~ok).any():
        out = {k: (flagged & ok, score) for k, (flagged, score) in out.items()}
    return out


def knn_outliers(unit: np.ndarray, threshold: float, k: int = OUTLIER_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """(flagged, score) by k-NN distance: mean cosine distance to the k nearest others, as robust z-scores."""
    # faiss only when searching: the definitions load and runs start without it
    import faiss

    n = len(unit)
    if n <= k + 1:
        return np.zeros(n, dtype=bool), np.zeros(n)
    index = faiss.IndexFlatIP(unit.shape[1])
    index.add(np.ascontiguousarray(unit, dtype=np.float32))
    sims, _ = index.search(np.ascontiguousarray(unit, dtype=np.float32), k + 1)
    distance = 1.0 - sims[:, 1:].mean(axis=1)  # the first neighbour is the sample itself
    median = float(np.median(distance))
    spread = MAD_TO_SIGMA * float(np.median(np.abs(distance - median))) or 1e-9
    z = (distance - median) / spread
    return _above(z, threshold, top=2 * threshold)


def issue_table(
    stats: pd.DataFrame,
    samples: pd.DataFrame,
    thresholds: Thresholds,
    outliers: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """`data_issues.csv` rows in frame_index order: one per sample and issue found.

    `samples` is frame_index (same rows as `stats`); a video's shape issues are listed once, by its path, and a
    video none of whose frames decoded is one `broken` row by its path.
    """
    video = (samples["kind"].astype(str) == "video").to_numpy()
    sources = samples["source"].astype(str).to_numpy()
    names = samples["filename"].astype(str).to_numpy()
    broken = (stats["broken"].astype(str) != "").to_numpy()
    dead_videos = {s for s in set(sources[video]) if broken[sources == s].all()}
    found = picture_issues(stats, thresholds)
    if outliers is not None:
        found["outlier"] = outliers
    records: list[tuple[int, int, str, str, float]] = []
    listed: set[tuple[str, str]] = set()
    for row in range(len(stats)):
        by_file = video[row] and sources[row] in dead_videos
        if broken[row]:
            name = sources[row] if by_file else names[row]
            if (name, "broken") not in listed:
                listed.add((name, "broken"))
                records.append((row, 0, name, "broken", 1.0))
            continue
        for order, issue in enumerate(ISSUES):
            if issue not in found or not found[issue][0][row]:
                continue
            per_file = video[row] and issue in ("odd_aspect_ratio", "odd_size")
            name = sources[row] if per_file else names[row]
            if (name, issue) in listed:
                continue
            listed.add((name, issue))
            records.append((row, order, name, issue, round(float(np.clip(found[issue][1][row], 0, 1)), 4)))
    table = pd.DataFrame(records, columns=pd.Index(["row", "order", *COLUMNS]))
    return table.sort_values(["row", "order"], kind="stable").loc[:, COLUMNS].reset_index(drop=True)


def counts(table: pd.DataFrame) -> dict[str, int]:
    """Rows per issue, every issue named (0 when none)."""
    found = table["issue"].value_counts().to_dict()
    return {issue: int(found.get(issue, 0)) for issue in ISSUES}


def write_issues_csv(path, table: pd.DataFrame):
    """`data_issues.csv`: filenames,issue,score; a header only when nothing was found."""
    with atomic_output(path) as handle:
        handle.write(table[COLUMNS].to_csv(index=False).encode("utf-8"))
    return Path(path)
