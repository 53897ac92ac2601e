"""The whole-video rule: a video is embedded whole or not at all."""

from __future__ import annotations

import numpy as np
import pandas as pd


def drop_broken_videos(frame_index: pd.DataFrame, done: np.ndarray, unreadable: dict[int, str]) -> None:
    """A video is embedded whole or not at all: one frame that cannot be decoded skips all its frames.

    Why: the targets take a video as one file. LightlyStudio decodes it itself and refuses it when its decoder
    fails part-way, and a bucket datasource holds the whole file; publishing the frames we could decode would
    put rows into the CSV that the target never shows. So the CSV, the checks and the target all leave it out,
    and every one of its frames is listed as unreadable with the first failure as the reason.
    """
    if not unreadable:
        return
    kinds = frame_index["kind"].to_numpy()
    sources = frame_index["source"].to_numpy()
    failed: dict[str, str] = {}
    for row in sorted(unreadable):
        if kinds[row] == "video":
            failed.setdefault(str(sources[row]), unreadable[row])
    if not failed:
        return
    for row in np.flatnonzero(np.isin(sources, list(failed))).tolist():
        if row not in unreadable:
            unreadable[row] = f"{failed[str(sources[row])]} (a video is published whole or not at all)"
        done[row] = False
