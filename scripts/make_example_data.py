"""Rebuild the example datasets in `data/` from scikit-image's bundled photographs (CC0 / public domain).

usage: python scripts/make_example_data.py [OUT]   (default: data)
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np
import skimage.data as skd
from PIL import Image

SIZE = (160, 120)


def photo(name: str) -> Image.Image:
    arr = getattr(skd, name)()
    img = Image.fromarray(arr)
    return img.convert("RGB")


def crops(img: Image.Image, n: int) -> list[Image.Image]:
    """`n` different 4:3 crops of a photograph, resized to SIZE."""
    w, h = img.size
    out = []
    for i in range(n):
        scale = 0.6 + 0.4 * (i % 3) / 2
        cw, ch = int(min(w, h * 4 / 3) * scale), int(min(h, w * 3 / 4) * scale)
        x = int((w - cw) * ((i * 0.37) % 1))
        y = int((h - ch) * ((i * 0.61) % 1))
        out.append(img.crop((x, y, x + cw, y + ch)).resize(SIZE, Image.Resampling.LANCZOS))
    return out


def save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=85) if path.suffix.lower() in {".jpg", ".jpeg"} else img.save(path)


def video(img: Image.Image, path: Path, codec: str, frames: int) -> None:
    """A slow pan across a photograph, so frames differ a little, as in real footage."""
    w, h = SIZE
    wide = np.asarray(img.resize((w * 2, h), Image.Resampling.LANCZOS))
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=15)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for f in range(frames):
            x = int(w * f / max(1, frames - 1))
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(wide[:, x : x + w]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def main(out: Path) -> None:
    flat = out / "images_flat"
    for i, img in enumerate(crops(photo("astronaut"), 3) + crops(photo("coffee"), 3) + crops(photo("rocket"), 2)):
        save(img, flat / (f"img-{i}.png" if i % 4 == 3 else f"img-{i}.jpg"))
    sub = out / "images_weak_labels"
    for i, img in enumerate(crops(photo("chelsea"), 4)):
        save(img, sub / "cats" / f"chelsea-{i}.jpg")
    for i, img in enumerate(crops(photo("astronaut"), 2) + crops(photo("rocket"), 2)):
        save(img, sub / "space" / f"space-{i}.jpg")
    for i, img in enumerate(crops(photo("hubble_deep_field"), 2)):
        save(img, sub / "space" / "deep_field" / f"hubble-{i}.jpg")
    for name in ("grass", "gravel", "brick"):
        save(crops(photo(name), 1)[0], sub / "textures" / f"{name}.png")
    videos = out / "videos"
    video(photo("coffee"), videos / "my_video_1.mp4", "h264", 40)
    video(photo("chelsea"), videos / "my_video_2.mov", "h264", 30)
    video(photo("astronaut"), videos / "my_video_3.avi", "mpeg4", 24)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data"))
