"""Benchmark inputs, made here with the project's own dependencies (Pillow, PyAV, numpy), so every benchmark runs
from a clean clone of the repository alone.

usage: python benchmarks/make_data.py OUT [--images N] [--videos N] [--frames N] [--size WxH] [--classes N]

Writes `OUT/images_flat` (every image, label 0), `OUT/images_sub` (the same images in `weak-label-K` folders) and
`OUT/videos` (mp4 h264, mov h264, avi mpeg4, in turn). Images are seeded random scenes (shapes plus sensor noise, so
a JPEG costs what a photograph costs to decode); one in five is a PNG. Benchmarks import the functions directly.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

VIDEO_FORMATS = (("mp4", "h264"), ("mov", "h264"), ("avi", "mpeg4"))


def scene(rng: np.random.Generator, width: int, height: int, shapes: int = 12) -> Image.Image:
    """A random RGB scene: a background, `shapes` ellipses and rectangles, and a little noise."""
    img = Image.new("RGB", (width, height), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(shapes):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = x0 + int(rng.integers(2, max(3, width // 2)))
        y1 = y0 + int(rng.integers(2, max(3, height // 2)))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=fill)
    pixels = np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def make_images(
    out: Path | str,
    n: int,
    size: tuple[int, int] = (640, 480),
    classes: int = 10,
    png_every: int = 5,
    flat: bool = True,
    seed: int = 0,
) -> Path:
    """`n` images in `out/images_sub/weak-label-K/` (and, with `flat`, the same in `out/images_flat/`).

    Every `png_every`-th image is a PNG (0: JPEG only). Returns `out`.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    folders = [out / "images_sub" / f"weak-label-{k}" for k in range(max(1, classes))]
    for folder in folders + ([out / "images_flat"] if flat else []):
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = scene(rng, *size)
        ext = ".png" if png_every and i % png_every == 0 else ".jpg"
        img.save(folders[i % len(folders)] / f"img-{i}{ext}", quality=90)
        if flat:
            img.save(out / "images_flat" / f"img-{i}{ext}", quality=90)
    return out


def make_small_jpegs(
    folder: Path | str, n: int, start: int = 0, classes: int = 10, size: tuple[int, int] = (64, 48)
) -> Path:
    """`n` small JPEGs numbered from `start` in `folder/weak-label-K/` (seeded by number, so reruns add the same files).

    Names are zero-padded, so files added later (a larger `start`) sort after the first ones, as new files do.
    """
    folder = Path(folder)
    for k in range(classes):
        (folder / f"weak-label-{k:02d}").mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        img = scene(np.random.default_rng(i), *size, shapes=4)
        img.save(folder / f"weak-label-{i % classes:02d}" / f"img-{i:08d}.jpg", quality=85)
    return folder


def make_videos(out: Path | str, n: int, frames: int = 300, size: tuple[int, int] = (640, 480), seed: int = 0) -> Path:
    """`n` videos in `out/videos/` (mp4 h264, mov h264, avi mpeg4, in turn): a slow pan across a wide scene."""
    import av

    width, height = size
    folder = Path(out) / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1)
    for v in range(n):
        ext, codec = VIDEO_FORMATS[v % len(VIDEO_FORMATS)]
        wide = np.asarray(scene(rng, width * 2, height))
        with av.open(str(folder / f"my_video_{v + 1}.{ext}"), "w") as container:
            stream = container.add_stream(codec, rate=30)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for f in range(frames):
                x = int(width * f / max(1, frames - 1))
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(wide[:, x : x + width]), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
    return folder


def parse_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return width, height


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--videos", type=int, default=3)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--size", default="640x480")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    size = parse_size(a.size)
    if a.images:
        make_images(a.out, a.images, size, a.classes, seed=a.seed)
    if a.videos:
        make_videos(a.out, a.videos, a.frames, size, seed=a.seed)


if __name__ == "__main__":
    main()
