"""Upright frames and photos: display rotation of phone videos, EXIF orientation of phone photos; `raw` keeps
the stored pixels (lightly-embed's)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from lightly_assets.dataset.orientation import OrientationError, check_orientation, exif_upright
from lightly_assets.dataset.video import iter_frames
from lightly_assets.embedding.cache import EmbeddingCache
from lightly_assets.embedding.decode import load_image
from lightly_assets.embedding.factory import load_model
from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples
from lightly_assets_tests.media import exif_rotated_jpeg, ffmpeg_upright_frame, rotated_video
from lightly_assets_tests.tables import frame_index_for


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


def test_load_image_turns_exif_photos_unless_raw(tmp_path: Path) -> None:
    path = exif_rotated_jpeg(tmp_path / "phone.jpg", 6)  # stored landscape, shown portrait (turned 90 CW)
    with Image.open(path) as im:
        shown = ImageOps.exif_transpose(im).convert("RGB").resize((16, 16), Image.Resampling.BILINEAR)
        stored = im.convert("RGB").resize((16, 16), Image.Resampling.BILINEAR)  # lightly-embed's pil_loader
    assert (load_image(path, 16, draft=False) == np.asarray(shown)).all()
    assert (load_image(path, 16, draft=False, upright=False) == np.asarray(stored)).all()
    assert not (np.asarray(shown) == np.asarray(stored)).all()


def test_orientation_is_part_of_the_cache_fingerprint(tmp_path: Path) -> None:
    root = tmp_path / "data"
    exif_rotated_jpeg(root / "phone.jpg", 8)
    model = load_model(None, input_size=16, seed=0, precision="fp32")
    cache = EmbeddingCache(tmp_path / "cache.npz")
    index = frame_index_for(root, ["phone.jpg"])
    upright = embed_samples(index, root, model, cache=cache, options=EmbedOptions(orientation="upright"))
    again = embed_samples(index, root, model, cache=cache, options=EmbedOptions(orientation="upright"))
    raw = embed_samples(index, root, model, cache=cache, options=EmbedOptions(orientation="raw"))
    assert (upright.reused, again.reused, raw.reused) == (0, 1, 0)
    assert not np.allclose(upright.matrix, raw.matrix)


def test_embedding_resumes_inside_a_video_from_the_cache(tmp_path: Path) -> None:
    """A run that stopped half-way through a video (the cache holds its first frames) embeds only the rest."""
    from lightly_assets.dataset.samples import build_sample_index
    from lightly_assets.dataset.scan import scan_dataset

    root = tmp_path / "data"
    rotated_video(root / "clip.mp4", 90, n_frames=40)
    samples = build_sample_index(scan_dataset(root).files, root).samples
    model = load_model(None, input_size=16, seed=0, precision="fp32")
    cache = EmbeddingCache(tmp_path / "cache.npz")
    half = embed_samples(
        samples.iloc[:25].reset_index(drop=True), root, model, cache=cache, options=EmbedOptions(batch_size=8)
    )
    whole = embed_samples(samples, root, model, cache=cache, options=EmbedOptions(batch_size=8))
    fresh = embed_samples(samples, root, model, options=EmbedOptions(batch_size=8))
    assert (half.embedded, whole.reused, whole.embedded) == (25, 25, 15)
    np.testing.assert_allclose(whole.matrix, fresh.matrix, rtol=1e-5, atol=1e-6)
