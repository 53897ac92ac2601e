"""Video files: Lightly frame names, exact frame counts by demuxing, sequential decoding.

Why demux: counting frames by decoding costs as much as embedding them; reading packet
headers costs almost nothing. The count must still equal what a full PyAV decode yields,
because every counted frame becomes a CSV row that must later get an embedding. So
packets that a decoder never shows (edit-list discards, invisible VP8/VP9 frames) are
left out, and streams whose packets cannot be trusted fall back to a decode count.
"""

from __future__ import annotations

import os
import re
from collections.abc import Container, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from PIL import Image

from lightly_assets.dataset.orientation import display_upright
from lightly_assets.dataset.packets import PACKET_PER_FRAME_CODECS, TINY_MPEG4_PACKET, shown_frames
from lightly_assets.errors import LightlyAssetsError

if TYPE_CHECKING:  # PyAV itself (0.1 s to import) is imported by the functions that open a video: not by photo runs
    import av
    import av.container
    import av.video.stream
    from av.video.reformatter import VideoReformatter

VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})

Method = Literal["auto", "decode"]

# Raw elementary streams: their "average rate" is the demuxer's 25 fps default, not the video's.
_RAW_FORMATS = frozenset({"h264", "hevc", "m4v", "mpegvideo", "h263", "h261", "vc1", "cavsvideo", "obu", "mjpeg"})
# Containers whose header states the stream length, so a short stream means truncation.
_LENGTH_IN_HEADER = ("avi", "matroska", "mov")


class VideoError(LightlyAssetsError):
    """A video file cannot be indexed or decoded; names the file and the reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type[VideoError], tuple[str, str]]:  # picklable, despite the 2-arg __init__
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class VideoIndex:
    """What index_video learned about one video; per-frame tuples are in presentation order.

    `time_s` is pts * time_base as the container states it (not shifted to start at 0): PyAV's `frame.time`,
    Lightly's `pts_unit='sec'`. `method`: how frames were counted ('demux' or 'decode'); `timestamps`: where the
    pts/time values come from ('pts', 'dts', 'synthesized' from the frame rate, or 'none'); `note`: why a decode
    count was needed, if it was.
    """

    path: str
    n_frames: int
    pts: tuple[int | None, ...]
    time_s: tuple[float | None, ...]
    fps: float | None
    width: int
    height: int
    codec: str
    method: Literal["demux", "decode"]
    timestamps: Literal["pts", "dts", "synthesized", "none"]
    note: str = ""


def frame_name(relpath: str, frame: int, n_frames: int) -> str:
    """Lightly's sample name for one video frame (lightly 1.6 VideoDataset.get_filename).

    Lightly splits the relative path on the last '.', so `sub/a.b.mp4` gives `sub/a.b-007-mp4.png`; the extension
    keeps its case; the zero padding is the number of digits of this video's own frame count.
    """
    if not 0 <= frame < n_frames:
        raise ValueError(f"{relpath}: frame {frame} out of range for {n_frames} frames")
    name, _, ext = relpath.rpartition(".")
    return f"{name}-{frame:0{len(str(n_frames))}d}-{ext}.png"


def _open(path: str | os.PathLike[str]) -> av.container.InputContainer:
    """Opens a file for reading, turning every failure into a VideoError."""
    p = Path(path)
    if not p.is_file():
        raise VideoError(path, "does not exist" if not p.exists() else "is not a file")
    if p.stat().st_size == 0:
        raise VideoError(path, "file is empty (0 bytes)")
    import av  # see the imports at the top

    try:
        container = av.open(str(p), mode="r", metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise VideoError(path, f"cannot be opened as a video: {_why(exc)}") from None
    except OSError as exc:
        raise VideoError(path, f"cannot be read: {exc.strerror or exc}") from None
    name = container.format.name
    if name.endswith("_pipe") or name.startswith("image2") or name == "tty":
        container.close()
        raise VideoError(path, f"is a still image or text ({name}), not a video")
    return container


def _why(exc: BaseException) -> str:
    """The human part of an av error, without errno noise."""
    return getattr(exc, "strerror", None) or str(exc)


def _video_stream(container: av.container.InputContainer, path: str | os.PathLike[str]) -> av.video.stream.VideoStream:
    """The first video stream; other streams are told not to be read at all."""
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoError(path, f"has no video stream (streams: {', '.join(kinds)})")
    import av.stream  # see the imports at the top

    stream = container.streams.video[0]
    for other in container.streams:
        if other.index != stream.index:
            other.discard = av.stream.Discard.all  # PyAV's enum: the string "all" raises ValueError
    return stream


@dataclass
class _Packets:
    """Per-frame timestamps gathered while demuxing, plus reasons to distrust them."""

    pts: list[int | None]
    dts: list[int | None]
    key_pts: int | None = None  # pts of the first packet, where decoding starts
    end: int | None = None  # largest pts/dts + duration seen, in stream time base
    total: int = 0  # every non-empty packet, discarded ones included
    doubt: str = ""


def _demux(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: str | os.PathLike[str],
) -> _Packets:
    """Reads every packet of the stream once, without decoding."""
    import av  # see the imports at the top

    codec = stream.codec_context.name
    got = _Packets(pts=[], dts=[])
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the flush packet at the end
                continue
            got.total += 1
            if packet.is_corrupt:
                raise VideoError(path, f"corrupt or truncated data at packet {got.total - 1}")
            if got.total == 1:
                got.key_pts = packet.pts
                if not packet.is_keyframe:
                    got.doubt = "stream does not start with a keyframe"
                    return got
            if packet.is_discard:  # before an edit-list start: decoders drop it
                continue
            shown = shown_frames(codec, memoryview(packet))
            if shown > 1:
                got.doubt = "a packet holds several shown frames"
            elif codec == "mpeg4" and packet.size < TINY_MPEG4_PACKET:
                got.doubt = "tiny MPEG-4 packet (possibly a not-coded frame)"
            if got.doubt:
                return got
            if shown == 0:
                continue
            got.pts.append(packet.pts)
            got.dts.append(packet.dts)
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is not None:
                stop = stamp + (packet.duration or 0)
                got.end = stop if got.end is None else max(got.end, stop)
    except av.FFmpegError as exc:
        raise VideoError(path, f"unreadable after packet {got.total}: {_why(exc)}") from None
    known = [p for p in got.pts if p is not None]
    if known and got.key_pts is not None and min(known) < got.key_pts:
        # Open-GOP leading pictures (e.g. HEVC RASL) are dropped by the decoder.
        got.doubt = "pictures shown before the first keyframe may be dropped"
    return got


def _declared_span(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Fraction | None:
    """Stream length in seconds as the container header states it, if it does."""
    fmt = container.format.name
    tb = stream.time_base
    if not fmt.startswith(_LENGTH_IN_HEADER) or tb is None:
        return None
    if fmt == "avi" and stream.frames:
        return stream.frames * tb  # AVI ticks are frames, empty chunks included
    if stream.duration:
        return stream.duration * tb
    tag = stream.metadata.get("DURATION", "")
    match = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", tag)
    if match:
        h, m, s = match.groups()
        return Fraction(int(h) * 3600 + int(m) * 60) + Fraction(s)
    return None


def _check_complete(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    got: _Packets,
    path: str | os.PathLike[str],
) -> None:
    """Raises VideoError when the packets stop well before the header says they end."""
    fmt = container.format.name
    if fmt.startswith("mov") and stream.frames and got.total < stream.frames:
        raise VideoError(path, f"truncated: {got.total} of {stream.frames} frames in the file index")
    declared = _declared_span(container, stream)
    known = [p for p in got.pts if p is not None]
    if declared is None or got.end is None or not known or stream.time_base is None:
        return
    start = 0 if fmt == "avi" else min(known)
    found = (got.end - start) * stream.time_base
    frame = Fraction(1, 30) if not stream.average_rate else 1 / stream.average_rate
    if declared - found > max(2 * frame, declared / 50):
        raise VideoError(
            path,
            f"truncated: video data ends at {float(found):.3f} s but the header says {float(declared):.3f} s",
        )


def _decode_pts(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: str | os.PathLike[str],
) -> list[int | None]:
    """Full decode (threaded), keeping only each frame's pts; the count fallback."""
    import av.codec.context  # see the imports at the top

    stream.thread_type = av.codec.context.ThreadType.AUTO
    pts: list[int | None] = []
    try:
        for frame in container.decode(stream):
            pts.append(frame.pts)
    except av.FFmpegError as exc:
        raise VideoError(path, f"decoding failed at frame {len(pts)}: {_why(exc)}") from None
    return pts


def _frame_rate(stream: av.video.stream.VideoStream, raw: bool) -> float | None:
    """Average frame rate; raw streams only know the codec's (guessed) rate."""
    rates = (stream.guessed_rate, stream.average_rate) if raw else (stream.average_rate, stream.guessed_rate)
    for rate in rates:
        if rate:
            return float(rate)
    return None


def _timestamps(
    pts: list[int | None],
    dts: list[int | None],
    stream: av.video.stream.VideoStream,
    raw: bool,
) -> tuple[tuple[int | None, ...], tuple[float | None, ...], str, float | None]:
    """Presentation-order pts and seconds, from pts, else dts, else frame position."""
    tb = stream.time_base
    if pts and None not in pts:
        chosen, source = sorted(p for p in pts if p is not None), "pts"  # packets come in decode order
    elif dts and None not in dts:
        chosen, source = sorted(d for d in dts if d is not None), "dts"
    else:
        fps = _frame_rate(stream, raw=True)
        if fps is None:
            n = len(pts)
            return (None,) * n, (None,) * n, "none", None
        times = tuple(i / fps for i in range(len(pts)))
        return (None,) * len(pts), times, "synthesized", fps
    seconds = tuple(float(p * tb) for p in chosen) if tb else (None,) * len(chosen)
    return tuple(chosen), seconds, source, _frame_rate(stream, raw=raw)


def index_video(path: str | os.PathLike[str], method: Method = "auto") -> VideoIndex:
    """Counts frames and collects their timestamps, by demuxing unless that is unsafe.

    method='auto' demuxes and falls back to a full decode when the packets may not map
    one-to-one to shown frames; method='decode' always decodes.
    """
    with _open(path) as container:
        stream = _video_stream(container, path)
        codec = stream.codec_context.name
        pts: list[int | None] = []
        dts: list[int | None] = []
        if method == "decode":
            note = "decode requested"
        elif codec not in PACKET_PER_FRAME_CODECS:
            note = f"codec {codec} is not known to map one packet to one frame"
        else:
            got = _demux(container, stream, path)
            note = got.doubt
            if not note:
                _check_complete(container, stream, got, path)
                pts, dts = got.pts, got.dts
        if note:  # a fresh container: the first one has been read to its end
            with _open(path) as again:
                pts = _decode_pts(again, _video_stream(again, path), path)
        if not pts:
            raise VideoError(path, "video stream has no frames")
        raw = container.format.name in _RAW_FORMATS
        stamps, seconds, source, fps = _timestamps(pts, dts, stream, raw)
        ctx = stream.codec_context
        return VideoIndex(
            path=str(path),
            n_frames=len(pts),
            pts=stamps,
            time_s=seconds,
            fps=fps,
            width=ctx.width,
            height=ctx.height,
            codec=codec,
            method="decode" if note else "demux",
            timestamps=source,  # type: ignore[arg-type]
            note=note,
        )


def _index_or_error(path: str | os.PathLike[str]) -> VideoIndex | VideoError:
    try:
        return index_video(path)
    except VideoError as exc:
        return exc


def index_videos(paths: Iterable[str | os.PathLike[str]], workers: int | None = None) -> list[VideoIndex | VideoError]:
    """index_video over many files in a thread pool, in input order; errors are returned.

    Threads, not processes: most of the time per file is avformat_find_stream_info and av_read_frame, which PyAV
    runs without the GIL. 2 shared cores, 48 files x 300 frames: sequential 390 ms, 2 threads 220-250 ms, 2 forked
    processes 200-410 ms: threads match processes without start-up, pickling or fork-with-threads hazards.
    """
    items = list(paths)
    if workers is None:
        workers = min(len(items), os.cpu_count() or 1)
    if workers <= 1 or len(items) <= 1:
        return [_index_or_error(p) for p in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_index_or_error, items))


def _rgb(frame: av.VideoFrame, reformatter: VideoReformatter, size: tuple[int, int] | None) -> Image.Image:
    """The frame in RGB at `size` (width, height) when given, scaled and converted in one swscale call; one
    reformatter per video keeps swscale's context (`frame.to_image` makes one per frame: 2x the cost at 64 px)."""
    width, height = size if size is not None else (None, None)
    return reformatter.reformat(frame, width, height, "rgb24").to_image()


def _upright_image(frame: av.VideoFrame, reformatter: VideoReformatter, size: tuple[int, int] | None) -> Image.Image:
    """The frame as players show it (display rotation applied), at `size` (width, height) when given; swscale
    resizes before the turn (cheap), so a quarter turn scales to the transposed size first."""
    rotation = getattr(frame, "rotation", 0) or 0  # PyAV's reading of the DISPLAYMATRIX side data
    if size is not None and round(rotation) % 180 == 90:
        size = size[1], size[0]
    return display_upright(_rgb(frame, reformatter, size), rotation)


def iter_frames(
    path: str | os.PathLike[str],
    size: tuple[int, int] | None = None,
    threads: bool = True,
    expected_frames: int | None = None,
    upright: bool = True,
    keep: Container[int] | None = None,
) -> Iterator[tuple[int, Image.Image]]:
    """Decodes a video once, front to back, yielding (frame number, RGB PIL image).

    `size` (width, height) is applied by swscale while converting to RGB, far cheaper than resizing the full
    image; only the frame yielded (and the decoder's reference frames) is held. `expected_frames` (index_video's
    n_frames): a different count raises. `upright` turns each frame by the display rotation, as players and
    LightlyStudio show it (False: the stored pixels, lightly-embed's). With `keep`, only those frame numbers are
    converted and yielded: a subsampled or resumed video pays no conversion for the others."""
    import av.codec.context  # see the imports at the top
    from av.video.reformatter import VideoReformatter

    with _open(path) as container:
        stream = _video_stream(container, path)
        if threads:
            stream.thread_type = av.codec.context.ThreadType.AUTO
        reformatter = VideoReformatter()
        number = 0
        try:
            for frame in container.decode(stream):
                if keep is None or number in keep:
                    image = _upright_image(frame, reformatter, size) if upright else _rgb(frame, reformatter, size)
                    yield number, image
                number += 1
        except av.FFmpegError as exc:
            raise VideoError(path, f"decoding failed at frame {number}: {_why(exc)}") from None
    if expected_frames is not None and number != expected_frames:
        raise VideoError(path, f"decoded {number} frames but the index has {expected_frames}")
