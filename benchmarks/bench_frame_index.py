"""Video frame indexing speed: demux counting (index_videos) side by side with decoding every frame.

usage: python benchmarks/bench_frame_index.py [--videos 3] [--frames 3000] [--size 640x480]
                                              [--data DIR] [--dir /tmp/bench_frame_index] [--workers N]
       python benchmarks/bench_frame_index.py --quick   # 3 videos x 120 frames 160x120, in seconds

Without --data, the videos are made once by benchmarks/make_data.py (mp4 h264, mov h264, avi mpeg4, in turn)
under --dir and reused. With --data, every video file directly in DIR (or DIR/videos) is used.
Each tool runs once after a warm-up read, so all see a warm page cache. The frame counts of every tool
must agree; the script says so and exits non-zero when they do not.

Lightly 1.6 itself counts frames with torchvision.io.read_video_timestamps, which torchvision >= 0.26
no longer ships, so there is no Lightly column: the decode column is what counting costs without demuxing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import av.codec.context
from make_data import make_videos as make_video_files
from make_data import parse_size

from lightly_assets.dataset.video import VIDEO_EXTENSIONS, VideoError, index_videos


def make_videos(root: Path, videos: int, frames: int, size: str) -> Path:
    """Makes the videos once per setting (benchmarks/make_data.py); returns the folder holding them."""
    out = root / f"{videos}x{frames}_{size}"
    if not (out / ".done").exists():
        make_video_files(out, videos, frames, parse_size(size))
        (out / ".done").touch()
    return out / "videos"


def find_videos(folder: Path) -> list[Path]:
    if (folder / "videos").is_dir():
        folder = folder / "videos"
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def demux_count(paths: list[Path], workers: int | None) -> list[int]:
    results = index_videos(paths, workers=workers)
    errors = [r for r in results if isinstance(r, VideoError)]
    if errors:
        sys.exit("\n".join(str(e) for e in errors))
    return [r.n_frames for r in results]  # type: ignore[union-attr]


def decode_count(paths: list[Path], threads: bool) -> list[int]:
    """Decodes every frame with PyAV (no RGB conversion): the cheapest exact count by decoding."""
    counts = []
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if threads:
                stream.thread_type = av.codec.context.ThreadType.AUTO
            counts.append(sum(1 for _ in container.decode(stream)))
    return counts


def timed(fn: Callable[[], list[int]]) -> tuple[float, list[int]]:
    start = time.perf_counter()
    counts = fn()
    return time.perf_counter() - start, counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=int, default=3)
    p.add_argument("--frames", type=int, default=3000)
    p.add_argument("--size", default="640x480")
    p.add_argument("--data", type=Path, help="use the videos in this folder instead of making them")
    p.add_argument("--dir", type=Path, default=Path("/tmp/bench_frame_index"))
    p.add_argument("--workers", type=int, default=None, help="index_videos workers (default: CPU count)")
    p.add_argument("--quick", action="store_true", help="3 videos x 120 frames 160x120: checks the script in seconds")
    a = p.parse_args()
    if a.quick:
        a.videos, a.frames, a.size = 3, 120, "160x120"

    folder = a.data if a.data else make_videos(a.dir, a.videos, a.frames, a.size)
    paths = find_videos(folder)
    if not paths:
        sys.exit(f"{folder}: no video files")
    for path in paths:
        path.read_bytes()  # warm the page cache

    rows = [
        (f"index_videos (demux, workers={a.workers or 'auto'})", *timed(lambda: demux_count(paths, a.workers))),
        ("index_videos (demux, 1 worker)", *timed(lambda: demux_count(paths, 1))),
        ("PyAV decode every frame (threads)", *timed(lambda: decode_count(paths, threads=True))),
        ("PyAV decode every frame (1 thread)", *timed(lambda: decode_count(paths, threads=False))),
    ]
    base = rows[0][1]
    print(f"{len(paths)} videos, {sum(rows[0][2]):,} frames, from {folder}")
    print(f"{'tool':40s} {'seconds':>9s} {'frames':>9s} {'frames/s':>12s} {'x index':>9s}")
    for name, seconds, counts in rows:
        total = sum(counts)
        print(f"{name:40s} {seconds:9.3f} {total:9d} {total / seconds:12,.0f} {seconds / base:9.1f}")
    same = all(counts == rows[0][2] for _, _, counts in rows)
    print(f"per-video frame counts equal across tools: {'yes' if same else 'NO'} {rows[0][2]}")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
