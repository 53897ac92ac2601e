"""frame_index tables and Lightly embedding CSVs written by hand after the shared contract (DESIGN.md), so the
code under test is checked against the contract rather than against itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd
from lightly.utils.io import save_embeddings

from lightly_assets.dataset.video import frame_name

DIM = 32  # the width of the random vectors in CSVs written here


def image_rows(dataset_dir: Path) -> list[dict[str, Any]]:
    """One frame_index row per image under `dataset_dir`'s label folders; labels number the folders in order."""
    labels = sorted(p.name for p in dataset_dir.iterdir() if p.is_dir())
    rows = []
    for label, label_name in enumerate(labels):
        for path in sorted((dataset_dir / label_name).iterdir()):
            stat = path.stat()
            name = path.relative_to(dataset_dir).as_posix()
            rows.append(
                {"filename": name, "source": name, "kind": "image", "frame": None, "pts": None, "time_s": None}
                | {"label": label, "label_name": label_name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            )
    return rows


def video_rows(dataset_dir: Path, label: int = 0) -> list[dict[str, Any]]:
    """One frame_index row per decoded frame of each `*.mp4` in `dataset_dir` (10 fps); one label per video."""
    rows = []
    for path in sorted(dataset_dir.glob("*.mp4")):
        with av.open(str(path)) as container:
            pts = [frame.pts for frame in container.decode(video=0)]
        stat, n = path.stat(), len(pts)
        for i, frame_pts in enumerate(pts):
            rows.append(
                {"filename": f"{path.stem}-{i:0{len(str(n))}d}-mp4.png", "source": path.name, "kind": "video"}
                | {"frame": i, "pts": frame_pts, "time_s": frame_pts / 10240, "label": label}
                | {"label_name": path.stem, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            )
        label += 1
    return rows


def frame_index(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as frame_index stores them: nullable integer frame and pts, nullable float time."""
    table = pd.DataFrame(rows)
    for column in ("frame", "pts"):
        table[column] = table[column].astype("Int64")
    table["time_s"] = table["time_s"].astype("Float64")
    return table


def write_csv(index: pd.DataFrame, path: Path, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """A Lightly embeddings CSV of random `dim`-wide vectors, one per frame_index row; returns the vectors."""
    vectors = np.random.default_rng(seed).normal(size=(len(index), dim)).astype(np.float32)
    save_embeddings(str(path), vectors, index["label"].tolist(), index["filename"].tolist())
    return vectors


def frame_index_for(root: Path, images: list[str], videos: dict[str, int] | None = None) -> pd.DataFrame:
    """The frame_index contract for `images` and the first n frames of each video: label 1 under `b/`, else 0;
    every video frame label 7 (the label_name is the label as text)."""
    rows = []
    for name in images:
        st = (root / name).stat()
        rows.append((name, name, "image", None, int(name.startswith("b/")), st.st_size, st.st_mtime_ns))
    for name, n in (videos or {}).items():
        st = (root / name).stat()
        rows += [(frame_name(name, i, n), name, "video", i, 7, st.st_size, st.st_mtime_ns) for i in range(n)]
    df = pd.DataFrame(rows, columns=["filename", "source", "kind", "frame", "label", "size", "mtime_ns"])
    df["frame"] = df["frame"].astype("Int64")
    df["label_name"] = df["label"].astype(str)
    return df
