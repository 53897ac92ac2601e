"""The data path: same vectors as lightly-embed, rows in frame_index order, bad files listed, cache reuse."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lightly_assets.columns import ColumnsError
from lightly_assets.dataset.video import frame_name, iter_frames
from lightly_assets.embedding.cache import EmbeddingCache
from lightly_assets.embedding.decode import load_image
from lightly_assets.embedding.factory import load_model
from lightly_assets.embedding.families.lightly import build_lightly_model
from lightly_assets.embedding.network import LightlyArch
from lightly_assets.embedding.pipeline import EmbedOptions, embed_samples
from lightly_assets_tests.media import blocky_image, shaded_video
from lightly_assets_tests.reference import lightly_embed
from lightly_assets_tests.tables import frame_index_for

SIZE = 16  # input size: tiny keeps the tests fast; the network is the real default one


@pytest.fixture(scope="module")
def model():
    return load_model(None, input_size=SIZE, seed=0)


@pytest.mark.lightly_tools
def test_same_vectors_as_lightly_embed(tmp_path: Path) -> None:
    """lightly-embed's own pipeline (LightlyDataset + transform + checkpoint loading) on the same folder."""
    names = ["a/x.jpg", "a/y.png", "b/z.jpg"]
    for i, name in enumerate(names):
        blocky_image(tmp_path / "data" / name, 50 + 10 * i, 40, seed=i)
    torch.manual_seed(5)
    net = build_lightly_model()
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, ckpt)
    expected, labels, filenames = lightly_embed(tmp_path / "data", ckpt, SIZE)
    m = load_model(str(ckpt), input_size=SIZE, precision="fp32")
    result = embed_samples(
        frame_index_for(tmp_path / "data", names), tmp_path / "data", m, options=EmbedOptions(batch_size=2, draft=False)
    )
    assert result.filenames == filenames == names
    assert result.labels == labels == [0, 0, 1]
    np.testing.assert_allclose(result.matrix, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_rows_in_order_unreadable_listed(tmp_path: Path, model) -> None:
    root = tmp_path / "data"
    names = [f"a/img{i}.jpg" for i in range(5)] + ["a/zero.jpg", "b/truncated.jpg", "b/last.png", "b/text.png"]
    for i, name in enumerate(names):
        blocky_image(root / name, 40, 30, seed=i)
    (root / "a/zero.jpg").write_bytes(b"")
    data = (root / "b/truncated.jpg").read_bytes()
    (root / "b/truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "b/text.png").write_text("not an image")
    seen: list[tuple[int, int]] = []
    result = embed_samples(
        frame_index_for(root, names),
        root,
        model,
        options=EmbedOptions(batch_size=2, workers=3),
        progress=lambda d, t: seen.append((d, t)),
    )
    good = [n for n in names if n not in ("a/zero.jpg", "b/truncated.jpg", "b/text.png")]
    assert result.filenames == good
    assert result.labels == [0] * 5 + [1]
    assert result.indices.tolist() == [0, 1, 2, 3, 4, 7]
    assert result.matrix.shape == (6, 32) and result.matrix.dtype == np.float32
    one_by_one = np.stack([model.embed(load_image(root / n, SIZE)[None])[0] for n in good])
    np.testing.assert_allclose(result.matrix, one_by_one, rtol=1e-4, atol=1e-5)
    reasons = dict(result.unreadable)
    assert [n for n, _ in result.unreadable] == ["a/zero.jpg", "b/truncated.jpg", "b/text.png"]
    assert "UnidentifiedImageError" in reasons["a/zero.jpg"]
    assert "truncated" in reasons["b/truncated.jpg"].lower()
    assert result.reused == 0 and result.embedded == 6 and result.samples_per_s > 0
    assert seen[-1] == (9, 9) and seen == sorted(seen)


def test_jpeg_draft_matches_full_decode(tmp_path: Path, model) -> None:
    names = [f"p{i}.jpg" for i in range(4)]
    for i, name in enumerate(names):
        blocky_image(tmp_path / name, 320, 240, seed=10 + i)
    with Image.open(tmp_path / names[0]) as im:
        im.draft("RGB", (SIZE * 2, SIZE * 2))
        assert im.size == (80, 60), "draft mode must really decode at a reduced scale here"
    index = frame_index_for(tmp_path, names)
    full = embed_samples(index, tmp_path, model, options=EmbedOptions(draft=False)).matrix
    fast = embed_samples(index, tmp_path, model, options=EmbedOptions(draft=True)).matrix
    cosine = (full * fast).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(fast, axis=1)
    assert cosine.min() > 0.999
    assert not np.array_equal(full, fast)


def test_video_frames_in_order_and_broken_video(tmp_path: Path, model) -> None:
    root = tmp_path / "data"
    blocky_image(root / "a/one.jpg", 40, 30, seed=1)
    shaded_video(root / "clip.avi", n_frames=7)
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(500))
    index = frame_index_for(root, ["a/one.jpg"], {"clip.avi": 7, "broken.mp4": 2})
    result = embed_samples(index, root, model, options=EmbedOptions(batch_size=4, workers=2))
    clip = [frame_name("clip.avi", i, 7) for i in range(7)]
    assert result.filenames == ["a/one.jpg", *clip]
    assert clip[3] == "clip-3-avi.png"
    frames = np.stack([np.asarray(im) for _, im in iter_frames(root / "clip.avi", size=(SIZE, SIZE))])
    np.testing.assert_allclose(result.matrix[1:], model.embed(frames), rtol=1e-4, atol=1e-5)
    assert not np.allclose(result.matrix[1], result.matrix[4], atol=1e-3)
    reasons = dict(result.unreadable)
    assert sorted(reasons) == sorted(frame_name("broken.mp4", i, 2) for i in range(2))
    assert "broken.mp4" in reasons[frame_name("broken.mp4", 0, 2)]
    # A video with fewer frames than indexed is left out whole: the targets take a video as one file.
    short = embed_samples(
        frame_index_for(root, ["a/one.jpg"], {"clip.avi": 9}), root, model, options=EmbedOptions(batch_size=4)
    )
    assert short.filenames == ["a/one.jpg"]
    reasons = dict(short.unreadable)
    assert sorted(reasons) == sorted(frame_name("clip.avi", i, 9) for i in range(9))
    assert "fewer frames" in reasons[frame_name("clip.avi", 8, 9)]
    assert "whole or not at all" in reasons[frame_name("clip.avi", 0, 9)]


def test_incremental_reuse(tmp_path: Path, model) -> None:
    root = tmp_path / "data"
    names = [f"a/{i}.png" for i in range(4)]
    for i, name in enumerate(names):
        blocky_image(root / name, 30, 30, seed=i)
    shaded_video(root / "v.avi", n_frames=3)
    cache = EmbeddingCache(tmp_path / "out" / "embedding_cache.npz")
    first = embed_samples(frame_index_for(root, names, {"v.avi": 3}), root, model, cache=cache)
    assert first.reused == 0 and first.embedded == 7 and cache.path.is_file()
    again = embed_samples(frame_index_for(root, names, {"v.avi": 3}), root, model, cache=cache)
    assert again.reused == 7 and again.embedded == 0
    np.testing.assert_array_equal(again.matrix, first.matrix)

    blocky_image(root / "a/1.png", 30, 30, seed=99)  # changed content (size/mtime differ)
    os.utime(root / "a/1.png", ns=(1, 1))
    blocky_image(root / "a/new.png", 30, 30, seed=100)
    names2 = [*names, "a/new.png"]
    third = embed_samples(frame_index_for(root, names2, {"v.avi": 3}), root, model, cache=cache)
    assert third.reused == 6 and third.embedded == 2
    assert third.filenames[:5] == names2
    np.testing.assert_array_equal(third.matrix[[0, 2, 3]], first.matrix[[0, 2, 3]])
    assert not np.allclose(third.matrix[1], first.matrix[1], atol=1e-3)

    other = load_model(None, input_size=SIZE, seed=1)  # another fingerprint: nothing reused
    assert embed_samples(frame_index_for(root, names2, {"v.avi": 3}), root, other, cache=cache).reused == 0
    cache.path.write_bytes(b"garbage")  # a broken cache only costs a recomputation
    assert embed_samples(frame_index_for(root, names2), root, model, cache=cache).embedded == 5
    assert sorted(p.name for p in cache.path.parent.iterdir()) == ["embedding_cache.npz"]


def test_bad_frame_index(tmp_path: Path, model) -> None:
    with pytest.raises(ColumnsError, match=r"lacks columns \['mtime_ns'\]"):
        embed_samples(pd.DataFrame(columns=["filename", "source", "kind", "frame", "label", "size"]), tmp_path, model)
    empty = embed_samples(frame_index_for(tmp_path, []), tmp_path, model)
    assert empty.matrix.shape == (0, 32) and empty.filenames == [] and empty.unreadable == []


@pytest.mark.lightly_tools
def test_model_checkpoint_from_lightly_arch_embeds(tmp_path: Path) -> None:
    """A non-default lightly checkpoint (16-d) goes through the same data path."""
    torch.manual_seed(0)
    net = build_lightly_model(LightlyArch(name="resnet-9", num_ftrs=16))
    torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "m.ckpt")
    blocky_image(tmp_path / "x.jpg", 20, 20, seed=0)
    result = embed_samples(frame_index_for(tmp_path, ["x.jpg"]), tmp_path, load_model(str(tmp_path / "m.ckpt"), 16))
    assert result.matrix.shape == (1, 16)
