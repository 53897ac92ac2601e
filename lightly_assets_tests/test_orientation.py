"""Upright frames and photos: display rotation of phone videos, EXIF orientation of phone photos; `raw` keeps
the stored pixels (lightly-embed's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from lightly_assets.dataset.orientation import OrientationError, check_orientation, exif_upright
from lightly_assets.dataset.video import iter_frames
from lightly_assets_tests.media import exif_rotated_jpeg, ffmpeg_upright_frame, rotated_video


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_frames_are_turned_as_ffmpeg_shows_them(tmp_path: Path, rotation: int) -> None:
    path = rotated_video(tmp_path / f"phone-{rotation}.mp4", rotation)
    reference = ffmpeg_upright_frame(path, tmp_path / "reference.png")  # the ffmpeg command line autorotates
    _, upright = next(iter_frames(path))
    assert np.asarray(upright).shape == reference.shape
    assert np.abs(np.asarray(upright).astype(int) - reference).mean() < 2
    _, stored = next(iter_frames(path, upright=False))
    assert stored.size == (64, 32)  # as stored: landscape, white block top-left
    _, small = next(iter_frames(path, size=(16, 8)))
    assert small.size == (16, 8)  # the size asked for, of the upright picture
    small_ref = Image.fromarray(reference).resize((16, 8), Image.Resampling.BILINEAR)
    assert np.abs(np.asarray(small).astype(int) - np.asarray(small_ref)).mean() < 20


def test_a_video_without_rotation_is_untouched(tmp_path: Path) -> None:
    path = rotated_video(tmp_path / "flat.mp4", 0)
    upright = [np.asarray(im) for _, im in iter_frames(path, size=(16, 16))]
    raw = [np.asarray(im) for _, im in iter_frames(path, size=(16, 16), upright=False)]
    assert all((a == b).all() for a, b in zip(upright, raw, strict=True))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow_and_browsers(tmp_path: Path, orientation: int) -> None:
    path = exif_rotated_jpeg(tmp_path / f"photo-{orientation}.jpg", orientation)
    with Image.open(path) as im:
        turned = exif_upright(im)
        expected = ImageOps.exif_transpose(im)
        assert turned.size == expected.size == ((48, 32) if orientation < 5 else (32, 48))
        assert (np.asarray(turned) == np.asarray(expected)).all()
        if orientation == 1:
            assert turned is im  # no copy of an upright photo


def test_orientation_setting_is_checked() -> None:
    assert check_orientation("raw") == "raw"
    with pytest.raises(OrientationError, match="upright, raw"):
        check_orientation("sideways")
