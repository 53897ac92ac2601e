"""Tests for lightly_assets.dataset.video on tiny videos encoded with PyAV in tmp_path.

Every frame count is checked against what a full PyAV decode of the same file yields,
since that is the number of frames the embedding step will later produce.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from lightly_assets.dataset.packets import shown_frames
from lightly_assets.dataset.video import (
    VIDEO_EXTENSIONS,
    VideoError,
    VideoIndex,
    frame_name,
    index_video,
    index_videos,
)
from lightly_assets_tests.media import H, W, decoded, packets, truncated, write_video


def remux(src: Path, dst: Path, edit) -> Path:
    """Copies the video packets of src into dst, passing each through edit(i, packet)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        target = out.add_stream_from_template(stream)
        for i, packet in enumerate(p for p in inp.demux(stream) if p.size):
            packet = edit(i, packet)
            if packet is not None:
                packet.stream = target
                out.mux(packet)
    return dst


def assert_exact(path: Path) -> VideoIndex:
    """index_video's count and timestamps equal those of a full decode."""
    index = index_video(path)
    frames = decoded(path)
    assert index.n_frames == len(frames) > 0
    assert len(index.pts) == len(index.time_s) == index.n_frames
    if index.timestamps == "pts":
        assert list(index.pts) == [f.pts for f in frames]
        assert index.time_s == pytest.approx([f.time for f in frames])
    assert (index.width, index.height) == (W, H)
    return index


# --- frame names ------------------------------------------------------------------


def test_frame_name_examples() -> None:
    assert frame_name("my_video_1.mp4", 7, 120) == "my_video_1-007-mp4.png"
    assert frame_name("my_video_1.mp4", 7, 99) == "my_video_1-07-mp4.png"
    assert frame_name("my_video_1.mp4", 99, 100) == "my_video_1-099-mp4.png"
    assert frame_name("sub/clip.v2.MOV", 3, 5) == "sub/clip.v2-3-MOV.png"
    with pytest.raises(ValueError, match="out of range"):
        frame_name("a.mp4", 5, 5)


@pytest.mark.lightly_tools
def test_frame_name_equals_lightly_video_dataset(tmp_path: Path) -> None:
    """Runs lightly 1.6's own VideoDataset.get_filenames/get_filename on our layout.

    With torchvision >= 0.26 a VideoDataset cannot be constructed (no video IO), so the
    instance is built without __init__ and given the attributes __init__ would set from
    its frame count; the naming code that runs is Lightly's.
    """
    from lightly.data._video import VideoDataset

    videos = {"my_video_1.mp4": 120, "sub/dir/clip.v2.MOV": 9, "b.avi": 10, "x.y.mkv": 1}
    dataset = VideoDataset.__new__(VideoDataset)
    dataset.root = str(tmp_path)
    dataset.videos = [os.path.join(str(tmp_path), rel) for rel in videos]
    counts = list(videos.values())
    dataset.offsets = [sum(counts[:i]) for i in range(len(counts))]
    dataset._length = sum(counts)

    ours = [frame_name(rel, i, n) for rel, n in videos.items() for i in range(n)]
    assert dataset.get_filenames() == ours
    assert [dataset.get_filename(i) for i in range(len(dataset))] == ours
    assert "my_video_1-007-mp4.png" in ours


def test_video_extensions() -> None:
    assert {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"} == set(VIDEO_EXTENSIONS)


# --- exact counts by demuxing -----------------------------------------------------


@pytest.mark.parametrize(
    ("name", "codec"),
    [
        ("v.mp4", "libx264"),
        ("v.mov", "libx264"),
        ("v.avi", "mpeg4"),
        ("v.mkv", "libx264"),
        ("v.webm", "libvpx-vp9"),
        ("v.mpg", "mpeg2video"),
        ("v.m4v", "libx264"),
    ],
)
def test_demux_count_equals_full_decode(tmp_path: Path, name: str, codec: str) -> None:
    path = write_video(tmp_path / name, codec, n=30)
    index = assert_exact(path)
    assert index.n_frames == 30
    assert index.method == "demux"
    assert index.timestamps == "pts"
    assert index.fps == pytest.approx(30)


def test_b_frames_are_sorted_into_presentation_order(tmp_path: Path) -> None:
    path = write_video(tmp_path / "b.mp4", "libx264", n=30)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.has_b_frames
    decode_order = [p.pts for p in packets(path)]
    assert decode_order != sorted(decode_order)  # B-frames really are reordered
    index = assert_exact(path)
    assert list(index.pts) == sorted(decode_order)


@pytest.mark.parametrize("name", ["vfr.mp4", "vfr.mkv", "vfr.avi"])
def test_variable_frame_rate(tmp_path: Path, name: str) -> None:
    gaps = [0, 1, 2, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 30, 31, 32, 33, 40, 41, 42]
    codec = "mpeg4" if name.endswith(".avi") else "libx264"
    path = write_video(tmp_path / name, codec, n=len(gaps), pts=gaps)
    index = assert_exact(path)
    assert index.n_frames == len(gaps)
    assert index.time_s == pytest.approx([g / 30 for g in gaps], abs=1e-3)


def test_raw_h264_without_timestamps(tmp_path: Path) -> None:
    path = write_video(tmp_path / "raw.h264", "libx264", n=25, fmt="h264")
    assert all(p.pts is None and p.dts is None for p in packets(path))
    index = assert_exact(path)
    assert index.n_frames == 25 and index.method == "demux"
    assert index.timestamps == "synthesized"
    assert index.pts == (None,) * 25
    assert index.time_s == pytest.approx([i / 30 for i in range(25)])


def test_edit_list_discarded_packets_are_not_counted(tmp_path: Path) -> None:
    src = write_video(tmp_path / "src.mp4", "libx264", n=30)
    shift = 5 * packets(src)[1].duration  # five frames before the edit-list start

    def earlier(_: int, packet: av.Packet) -> av.Packet:
        packet.pts -= shift
        packet.dts -= shift
        return packet

    path = remux(src, tmp_path / "edit.mp4", earlier)
    assert sum(p.is_discard for p in packets(path)) == 5
    index = assert_exact(path)
    assert index.n_frames == 25 and index.method == "demux"


def test_stream_without_leading_keyframe_falls_back_to_decode(tmp_path: Path) -> None:
    opts = {"x264-params": "keyint=10:min-keyint=10:scenecut=0"}
    src = write_video(tmp_path / "gop.mp4", "libx264", n=40, options=opts)
    path = remux(src, tmp_path / "cut.mp4", lambda i, p: None if i == 0 else p)
    assert len(packets(path)) == 39
    index = assert_exact(path)
    assert index.method == "decode" and "start with a keyframe" in index.note
    assert index.n_frames < 39


def test_hidden_vp8_frame_is_not_counted(tmp_path: Path) -> None:
    src = write_video(tmp_path / "src.webm", "libvpx", n=20)

    def hide(i: int, packet: av.Packet) -> av.Packet:
        if i != 5:
            return packet
        data = bytearray(bytes(packet))
        data[0] &= ~(1 << 4)  # clear show_frame in the VP8 frame tag
        hidden = av.Packet(bytes(data))
        hidden.pts, hidden.dts, hidden.time_base = packet.pts, packet.dts, packet.time_base
        return hidden

    path = remux(src, tmp_path / "hidden.webm", hide)
    assert len(packets(path)) == 20
    index = assert_exact(path)
    assert index.n_frames == 19 and index.method == "demux"


def _not_coded_vop(time_increment: int) -> bytes:
    """An MPEG-4 part 2 N-VOP (vop_coded=0), as Xvid writes for dropped frames.

    5 time-increment bits match the 1/30 s time base of write_video's streams.
    """
    bits = "01" + "0" + "1" + format(time_increment, "05b") + "1" + "0"
    bits += "0" + "1" * ((8 - (len(bits) + 1) % 8) % 8)  # MPEG-4 stuffing
    return bytes.fromhex("000001b6") + int(bits, 2).to_bytes(len(bits) // 8, "big")


def test_not_coded_mpeg4_frame_falls_back_to_decode(tmp_path: Path) -> None:
    src = write_video(tmp_path / "src.avi", "mpeg4", n=20)
    dst = tmp_path / "nvop.avi"
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = inp.streams.video[0]
        target = out.add_stream_from_template(stream)
        sent = 0
        for i, packet in enumerate(p for p in inp.demux(stream) if p.size):
            batch = [packet]
            if i == 5:
                batch.append(av.Packet(_not_coded_vop(6)))
            for item in batch:
                item.pts = item.dts = sent
                item.time_base, item.stream = packet.time_base, target
                out.mux(item)
                sent += 1
    assert len(packets(dst)) == 21  # the decoder shows nothing for the N-VOP
    index = assert_exact(dst)
    assert index.n_frames == 20
    assert index.method == "decode" and "MPEG-4" in index.note


def test_vp9_superframe_counts_only_shown_frames() -> None:
    hidden = bytes([0b10000100, 0xAA, 0xBB])  # profile 0, inter frame, show_frame=0
    shown = bytes([0b10000110, 0xCC])  # profile 0, inter frame, show_frame=1
    marker = 0b11000001  # superframe: 2 frames, 1 size byte each
    superframe = hidden + shown + bytes([marker, len(hidden), len(shown), marker])
    assert shown_frames("vp9", memoryview(superframe)) == 1
    assert shown_frames("vp9", memoryview(hidden)) == 0
    assert shown_frames("vp9", memoryview(bytes([0b10001000]))) == 1  # show_existing


def test_method_decode_agrees_with_demux(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", "libx264", n=20)
    by_demux, by_decode = index_video(path), index_video(path, method="decode")
    assert by_decode.method == "decode"
    assert (by_demux.n_frames, by_demux.pts) == (by_decode.n_frames, by_decode.pts)


# --- errors -----------------------------------------------------------------------


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=8000)
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 8000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Broken inputs and the reason each error message must give."""
    good = write_video(tmp_path / "good.mp4", "libx264", n=30)
    fast = write_video(tmp_path / "fast.mp4", n=30, container_options={"movflags": "faststart"})
    mkv = write_video(tmp_path / "good.mkv", n=30)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    image = tmp_path / "still.mp4"
    Image.new("RGB", (8, 8)).save(image, format="PNG")
    return {
        "empty": (empty, "empty"),
        "text": (text, "cannot be opened"),
        "image": (image, "still image"),
        "audio": (_audio_only(tmp_path / "sound.m4a"), "no video stream"),
        "missing": (tmp_path / "missing.mp4", "does not exist"),
        "mp4 cut": (truncated(good, tmp_path / "cut.mp4", 0.5), "cannot be opened"),
        "faststart cut": (truncated(fast, tmp_path / "fcut.mp4", 0.6), "truncated"),
        "mkv cut": (truncated(mkv, tmp_path / "cut.mkv", 0.6), "truncated"),
    }


def test_bad_files_raise_video_error(tmp_path: Path) -> None:
    for label, (path, reason) in bad_files(tmp_path).items():
        with pytest.raises(VideoError) as info:
            index_video(path)
        error = info.value
        assert isinstance(error, ValueError), label
        assert str(path) in str(error) and reason in error.reason, (label, str(error))
        assert error.__cause__ is None, label  # no av traceback chained in
        assert error.__context__ is None or error.__suppress_context__, label
        assert not isinstance(error, av.FFmpegError), label


def test_video_error_pickles() -> None:
    error = pickle.loads(pickle.dumps(VideoError("a/b.mp4", "file is empty")))
    assert (error.path, error.reason, str(error)) == (
        "a/b.mp4",
        "file is empty",
        "a/b.mp4: file is empty",
    )


def test_index_videos_keeps_order_and_returns_errors(tmp_path: Path) -> None:
    a = write_video(tmp_path / "a.mp4", n=12)
    b = write_video(tmp_path / "b.avi", "mpeg4", n=7)
    empty = tmp_path / "c.mp4"
    empty.touch()
    results = index_videos([a, empty, b, a], workers=2)
    assert [type(r) for r in results] == [VideoIndex, VideoError, VideoIndex, VideoIndex]
    assert [r.n_frames for r in results if isinstance(r, VideoIndex)] == [12, 7, 12]
    assert results[1].path == str(empty)
    assert index_videos([], workers=None) == []
