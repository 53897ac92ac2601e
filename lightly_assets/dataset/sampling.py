"""Which frames of a video become samples: all of them (Lightly's default), every n-th, or a target frame rate.

Why LightlyStudio's rule for `target_fps`: the published video must show exactly the frames the CSV holds, and
LightlyStudio's own loader keeps, for a target rate, the first frame of each bucket of `fps / target_fps` frames
(`lightly_studio.core.video.add_videos._should_keep_frame`); the same arithmetic here keeps the same frames.
Kept frames keep their original frame numbers, so names and timestamps stay those of the full video.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lightly_assets.errors import LightlyAssetsError


class SamplingError(LightlyAssetsError):
    """Frame subsampling settings that cannot be applied; says which and why."""


@dataclass(frozen=True)
class FrameSampling:
    """`frame_stride` keeps frames 0, n, 2n, ...; `target_fps` keeps about that many frames per second."""

    frame_stride: int = 1
    target_fps: float | None = None

    def __post_init__(self) -> None:
        if self.frame_stride < 1:
            raise SamplingError(f"frame_stride must be at least 1, got {self.frame_stride}")
        if self.target_fps is not None and not self.target_fps > 0:
            raise SamplingError(f"target_fps must be greater than 0, got {self.target_fps}")
        if self.target_fps is not None and self.frame_stride != 1:
            raise SamplingError("set frame_stride or target_fps, not both")

    @property
    def every_frame(self) -> bool:
        return self.frame_stride == 1 and self.target_fps is None

    def describe(self) -> str:
        if self.target_fps is not None:
            return f"target_fps={self.target_fps:g}"
        return "every frame" if self.frame_stride == 1 else f"frame_stride={self.frame_stride}"

    def kept(self, n_frames: int, fps: float | None) -> list[int]:
        """Frame numbers kept out of 0..n_frames-1; a video of unknown rate keeps every frame for `target_fps`."""
        if self.target_fps is None:
            return list(range(0, n_frames, self.frame_stride))
        original = float(fps or 0.0)
        if original <= 0.0 or self.target_fps >= original:
            return list(range(n_frames))
        target = self.target_fps
        # LightlyStudio's expression, operand for operand, so float rounding picks the same frames.
        return [
            i
            for i in range(n_frames)
            if i == 0 or math.floor(i * target / original) != math.floor((i - 1) * target / original)
        ]
