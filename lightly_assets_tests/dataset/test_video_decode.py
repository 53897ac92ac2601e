"""Sequential decoding of lightly_assets.dataset.video on tiny videos encoded with PyAV in tmp_path: every frame
once, in order, at the right size; the extra streams real files carry are ignored."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from lightly_assets.dataset import video as video_module
from lightly_assets.dataset.video import VideoError, index_video, iter_frames
from lightly_assets_tests.media import EXTRAS, H, W, cut_inside_packet, decoded, packets, video_with, write_video

# --- sequential decoding ------------------------------------------------------------


@pytest.mark.parametrize(("name", "codec"), [("v.mp4", "libx264"), ("v.avi", "mpeg4")])
def test_iter_frames_count_order_and_size(tmp_path: Path, name: str, codec: str) -> None:
    options = {} if codec == "libx264" else {"bf": "2"}
    path = write_video(tmp_path / name, codec, n=30, options=options)
    assert [p.pts for p in packets(path)] != sorted(p.pts for p in packets(path))
    index = index_video(path)
    seen = list(iter_frames(path, size=(32, 24), expected_frames=index.n_frames))
    assert [i for i, _ in seen] == list(range(index.n_frames))
    assert all(img.mode == "RGB" and img.size == (32, 24) for _, img in seen)
    corner = (slice(0, 8), slice(0, 8))  # the numbered 16x16 corner of moving_texture, at half size
    brightness = [float(np.asarray(img)[corner].mean()) for _, img in seen]
    assert brightness == sorted(brightness)  # presentation order, not decode order
    expected = [20 + 6 * i for i in range(30)]  # what moving_texture(i) encodes
    assert brightness == pytest.approx(expected, abs=8)


def test_iter_frames_full_size_without_threads(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mkv", n=10)
    reference = [f.to_image() for f in decoded(path)]
    seen = list(iter_frames(path, threads=False))
    assert len(seen) == index_video(path).n_frames == 10
    assert all(img.size == (W, H) for _, img in seen)
    assert all(np.array_equal(np.asarray(img), np.asarray(ref)) for (_, img), ref in zip(seen, reference, strict=True))


def test_iter_frames_count_mismatch_raises(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", n=10)
    with pytest.raises(VideoError, match="decoded 10 frames but the index has 11"):
        list(iter_frames(path, expected_frames=11))


def test_iter_frames_decode_error_names_file_and_frame(tmp_path: Path) -> None:
    fast = write_video(tmp_path / "f.mp4", n=30, container_options={"movflags": "faststart"})
    cut = cut_inside_packet(fast, tmp_path / "cut.mp4", 20)
    got: list[int] = []
    with pytest.raises(VideoError, match=r"decoding failed at frame \d+") as info:
        for number, _ in iter_frames(cut, threads=False):
            got.append(number)
    assert str(cut) in str(info.value)
    assert got == list(range(len(got))) and 0 < len(got) < 30
    # Frame-threaded decoding drops the broken tail silently; the count check catches it.
    with pytest.raises(VideoError, match="but the index has 30") as info:
        list(iter_frames(cut, threads=True, expected_frames=30))
    assert str(cut) in str(info.value)


# --- the extra streams real files carry ---------------------------------------------------------------------


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_extra_streams_are_ignored_and_every_frame_counted(tmp_path: Path, extra: str) -> None:
    """Sound (AAC, AC3, 5.1, two tracks, sound first), subtitles, timecode, cover art, a second picture stream."""
    path = video_with(tmp_path / extra, extra, n_frames=12)
    with av.open(str(path)) as container:
        assert len(container.streams) > 1, "the file has its extra stream"
    index = index_video(path)
    assert index.n_frames == len(decoded(path)) == 12
    assert (index.width, index.height) == (64, 48) and index.codec == "h264"
    frames = list(iter_frames(path, size=(16, 16), expected_frames=index.n_frames))
    assert [n for n, _ in frames] == list(range(12))


def test_audio_track_kinds_are_what_they_claim(tmp_path: Path) -> None:
    """The builders write real multichannel AAC and AC3, so the tests above do test what they name."""
    layouts = {}
    for extra in ("aac", "aac51", "ac3"):
        with av.open(str(video_with(tmp_path / extra, extra))) as container:
            audio = container.streams.audio[0].codec_context
            layouts[extra] = (audio.name, audio.channels)
    assert layouts == {"aac": ("aac", 2), "aac51": ("aac", 6), "ac3": ("ac3", 6)}


def test_no_pyav_setting_is_a_string_where_pyav_wants_an_enum() -> None:
    """The class of bug behind `discard = "all"`: PyAV 18 takes its own enums; a string may raise or be ignored."""
    import ast

    source = Path(video_module.__file__).read_text("utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Attribute):
                    assert target.attr not in {"discard", "thread_type", "skip_frame"}, ast.unparse(node)


def test_iter_frames_keep_yields_only_those_frames_in_one_pass(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", n=30)
    every = {n: np.asarray(im) for n, im in iter_frames(path, size=(16, 16))}
    kept = list(iter_frames(path, size=(16, 16), keep={0, 7, 29}, expected_frames=30))
    assert [n for n, _ in kept] == [0, 7, 29]
    assert all((np.asarray(im) == every[n]).all() for n, im in kept)
