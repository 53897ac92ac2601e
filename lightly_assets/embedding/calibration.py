"""Samples for int8 calibration: a spread subset of the dataset, decoded exactly as the model will see it.

NNCF's post-training quantisation picks each layer's int8 range from real activations, so the samples come from
the dataset being embedded (every k-th sample, images and video frames alike), not from random pixels. Only the
first run of a model with `precision: int8` decodes them: the quantised graph is cached like any other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lightly_assets.embedding.decode import decode_video, load_image
from lightly_assets.embedding.preprocessing import Preprocessing

CALIBRATION_SAMPLES = 128  # NNCF's guidance: a few hundred at most; 128 quantise a ResNet in seconds


def calibration_pixels(
    frame_index: pd.DataFrame, data_dir: Path, prep: Preprocessing, n: int = CALIBRATION_SAMPLES
) -> np.ndarray:
    """uint8 NHWC pixels of up to `n` samples spread over `frame_index` (unreadable ones are left out)."""
    if len(frame_index) == 0:
        return np.zeros((0, prep.height, prep.width, 3), np.uint8)
    rows = np.unique(np.linspace(0, len(frame_index) - 1, min(n, len(frame_index))).astype(int))
    picked = frame_index.iloc[rows]
    out: list[np.ndarray] = []
    videos: dict[str, dict[int, int]] = {}
    for i, (source, frame) in enumerate(zip(picked["source"], picked["frame"], strict=True)):
        if pd.isna(frame):
            try:
                out.append(load_image(Path(data_dir) / source, prep))
            except Exception:  # noqa: BLE001, S112 - an unreadable file is reported by the embedding step itself
                continue
        else:
            videos.setdefault(str(source), {})[int(frame)] = i
    for source, wanted in videos.items():
        out.extend(px for _, px, _ in decode_video(Path(data_dir) / source, wanted, prep) if px is not None)
    return np.stack(out) if out else np.zeros((0, prep.height, prep.width, 3), np.uint8)
