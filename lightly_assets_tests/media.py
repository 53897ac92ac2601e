"""Test media made on the fly: images, videos, and videos carrying the extra streams real files have.

Why the ffmpeg binary: phones, cameras and editors write sound tracks, subtitles, timecode tracks, cover art and
display rotation; PyAV's muxer API does not cover all of those, the ffmpeg executable that the `imageio-ffmpeg`
wheel ships does, so the files here are written the way real tools write them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}


def make_image(
    path: Path, seed: int = 0, size: tuple[int, int] = (32, 24), fill: tuple[int, int, int] | None = None
) -> Path:
    """A small RGB image (noise from `seed`, or one `fill` colour), saved in the format its extension names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fill is None:
        arr = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    else:
        arr = np.full((size[1], size[0], 3), fill, dtype=np.uint8)
    Image.fromarray(arr).save(path, format=IMAGE_FORMATS.get(path.suffix.lower(), "PNG"))
    return path


def shaded_image(path: Path, shade: int) -> Path:
    """A 16x12 PNG of one colour that `shade` sets, so pictures with different shades differ."""
    return make_image(path, size=(16, 12), fill=(shade, 90, 200 - shade))


def make_cats_and_dogs(dataset_dir: Path) -> Path:
    """Two label folders, `cats` and `dogs`, of three distinct flat-coloured 16x12 PNGs each."""
    for label in ("cats", "dogs"):
        for i in range(3):
            shaded_image(dataset_dir / label / f"{i}.png", 40 * i + (100 if label == "dogs" else 0))
    return dataset_dir


Frames = Callable[[int, int, int], np.ndarray]  # (frame i, width, height) -> an HxWx3 uint8 picture


def grey_frames(i: int, width: int, height: int) -> np.ndarray:
    """Frame i is a flat grey of shade 20*i (mod 256): frames differ, and a frame's shade names its number."""
    return np.full((height, width, 3), (20 * i) % 256, np.uint8)


def noise_frames(seed: int | None = None) -> Frames:
    """Frames of random noise (frame i from seed i, or from (seed, i)): nothing for a codec to predict, so damage
    to the file cannot hide."""

    def frame(i: int, width: int, height: int) -> np.ndarray:
        rng = np.random.default_rng(i if seed is None else (seed, i))
        return rng.integers(0, 255, (height, width, 3), dtype=np.uint8)

    return frame


def still_then_moving(still: int) -> Frames:
    """`still` identical frames (a static scene), then frames that all differ (a bar that widens)."""

    def frame(i: int, width: int, height: int) -> np.ndarray:
        shade = 128 if i < still else 30 * (i - still)
        pixels = np.full((height, width, 3), shade, np.uint8)
        pixels[:, : 4 + 4 * max(0, i - still + 1)] = 255 - shade
        return pixels

    return frame


def barred_frames(i: int, width: int, height: int) -> np.ndarray:
    """A grey of shade 20*i with a bar of the opposite shade, (5*i mod width) pixels wide: every frame differs."""
    pixels = grey_frames(i, width, height)
    pixels[:, : (i * 5) % width] = 255 - pixels[0, 0]
    return pixels


def moving_texture(i: int, width: int, height: int) -> np.ndarray:
    """A texture that slides 2 px a frame (so encoders use B-frames) with a 16x16 corner of brightness 20+6i that
    numbers the frame."""
    texture = np.random.default_rng(0).integers(-15, 16, (height, 2 * width, 3))
    shift = (2 * i) % width
    pixels = 100 + texture[:, shift : shift + width]
    pixels[:16, :16] = 20 + 6 * i
    return pixels.clip(0, 255).astype(np.uint8)


def make_video(
    path: Path,
    n_frames: int = 10,
    size: tuple[int, int] = (32, 32),
    codec: str = "mpeg4",
    rate: int = 10,
    frames: Frames = grey_frames,
    *,
    pts: list[int] | None = None,
    fmt: str | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """A short video of `n_frames` pictures drawn by `frames` (flat greys by default), written with PyAV.

    `pts` (in 1/rate s) gives a variable frame rate; `fmt` a container format the suffix does not name; `options`
    and `container_options` go to the encoder and the muxer.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    with av.open(str(path), "w", format=fmt, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate, options=options or {})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if pts is not None:
            stream.time_base = Fraction(1, rate)
        for i in range(n_frames):
            picture = av.VideoFrame.from_ndarray(frames(i, width, height), format="rgb24")
            if pts is not None:
                picture.pts, picture.time_base = pts[i], Fraction(1, rate)
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def ffmpeg_exe() -> str:
    """The ffmpeg executable of the imageio-ffmpeg wheel (a test dependency), so no system ffmpeg is needed."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg(*args: str | Path) -> None:
    """Runs ffmpeg quietly; its own error text is the failure message."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(map(str, args))}: {done.stderr.strip()}")


def _video_input(n_frames: int, size: tuple[int, int], rate: int) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size[0]}x{size[1]}:rate={rate}:duration={n_frames / rate}"]


def _audio_input(n_frames: int, rate: int, layout: str = "stereo") -> list[str]:
    seconds = n_frames / rate + 0.5  # sound that runs past the last picture, as it often does
    return [
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate=48000:duration={seconds},aformat=channel_layouts={layout}",
    ]


# The extra streams a real file carries, by name: (extra ffmpeg inputs, output options, container extension).
# Inputs are numbered after the picture (input 0); `{srt}` and `{cover}` are files written beside the video.
EXTRAS: dict[str, tuple[list[str], list[str], str]] = {
    "aac": (["audio"], ["-c:a", "aac"], ".mp4"),
    "aac51": (["audio:5.1"], ["-c:a", "aac"], ".mp4"),
    "ac3": (["audio:5.1"], ["-c:a", "ac3"], ".avi"),
    "ac3_mkv": (["audio:5.1"], ["-c:a", "ac3"], ".mkv"),
    "audio_first": (["audio"], ["-c:a", "aac"], ".mov"),  # the sound track is stream 0
    "two_audio": (["audio", "audio:mono"], ["-c:a", "aac"], ".mkv"),
    "subtitles_mkv": (["srt"], ["-c:s", "srt"], ".mkv"),
    "subtitles_mp4": (["srt"], ["-c:s", "mov_text"], ".mp4"),
    "timecode": ([], ["-timecode", "01:00:00:00"], ".mov"),  # a tmcd data track
    "cover_mkv": (["attach"], [], ".mkv"),  # an attachment (image/jpeg): ffmpeg shows it as an attached picture
    "cover_mp4": (["cover"], ["-c:v:1", "mjpeg", "-disposition:v:1", "attached_pic"], ".mp4"),
    "second_video": (["video2"], [], ".mkv"),  # a second, smaller picture stream (e.g. a preview)
}


def write_srt(path: Path, seconds: float) -> Path:
    path.write_text(f"1\n00:00:00,000 --> 00:00:{min(seconds, 59):06.3f}\nhello\n".replace(".", ","), "utf-8")
    return path


def video_with(
    path_stem: Path,
    extra: str,
    n_frames: int = 12,
    size: tuple[int, int] = (64, 48),
    rate: int = 10,
    codec: str = "libx264",
) -> Path:
    """A short video (testsrc2 pattern) with one kind of extra stream from EXTRAS; returns its path.

    Mapping is explicit, so the picture is the first video stream unless `extra` says otherwise.
    """
    wanted, options, ext = EXTRAS[extra]
    path = path_stem.with_suffix(ext)
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs: list[str] = []
    maps: list[str] = []
    attach: list[str] = []
    for i, kind in enumerate(wanted, start=1):
        if kind.startswith("audio"):
            layout = kind.partition(":")[2] or "stereo"
            inputs += _audio_input(n_frames, rate, layout)
            maps += ["-map", f"{i}:a"]
        elif kind == "srt":
            inputs += ["-i", str(write_srt(path.with_name(f".{path.stem}.srt"), n_frames / rate))]
            maps += ["-map", f"{i}:s"]
        elif kind == "cover":
            inputs += ["-i", str(make_image(path.with_name(f".{path.stem}-cover.jpg"), size=(40, 40)))]
            maps += ["-map", f"{i}:v"]
        elif kind == "video2":
            inputs += _video_input(n_frames, (size[0] // 2, size[1] // 2), rate)
            maps += ["-map", f"{i}:v"]
        elif kind == "attach":
            cover = make_image(path.with_name(f".{path.stem}-cover.jpg"), size=(40, 40))
            attach = ["-attach", str(cover), "-metadata:s:t", "mimetype=image/jpeg"]
    picture = ["-map", "0:v"]
    order = maps + picture if extra == "audio_first" else picture + maps
    video_codec = ["-c:v", codec, "-pix_fmt", "yuv420p", "-g", "5"]
    ffmpeg(*_video_input(n_frames, size, rate), *inputs, *order, *video_codec, *options, *attach, path)
    return path


def rotated_video(path: Path, rotation: int, n_frames: int = 6, size: tuple[int, int] = (64, 32)) -> Path:
    """An H.264 MP4 whose container asks players to turn it `rotation` degrees counter-clockwise (display matrix).

    The pixels are a flat field with a white block in the stored picture's top-left corner, so which way a frame
    was turned can be read back; written as phones write it: stored sideways, with display rotation side data.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = path.with_name(f".{path.stem}-stored.mp4")  # helper files are hidden: a dataset scan ignores them
    marked = np.zeros((size[1], size[0], 3), np.uint8)
    marked[: size[1] // 2, : size[0] // 4] = 255
    source = path.with_name(f".{path.stem}-marker.png")
    Image.fromarray(marked).save(source)
    ffmpeg("-loop", "1", "-i", source, "-frames:v", n_frames, "-r", 10, "-c:v", "libx264", "-pix_fmt", "yuv420p", plain)
    ffmpeg("-display_rotation", rotation, "-i", plain, "-c", "copy", path)
    return path


def ffmpeg_upright_frame(path: Path, out: Path) -> np.ndarray:
    """The first frame as the ffmpeg command line shows it (it applies display rotation): the reference picture."""
    ffmpeg("-i", path, "-frames:v", 1, out)
    with Image.open(out) as im:
        return np.asarray(im.convert("RGB"))


def exif_rotated_jpeg(path: Path, orientation: int, size: tuple[int, int] = (48, 32)) -> Path:
    """A JPEG stored landscape with a white top-left block and an EXIF Orientation tag (1-8), as phones save them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[: size[1] // 2, : size[0] // 4] = 255
    image = Image.fromarray(arr)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, format="JPEG", exif=exif, quality=95)
    return path


def blocky_image(path: Path, w: int, h: int, seed: int) -> Path:
    """Random 8x8 blocks (so resizing matters), saved in the format of `path`'s suffix."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    pixels = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:h, :w]  # blocky, so resizing matters
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def shaded_video(path: Path, n_frames: int, w: int = 48, h: int = 32) -> Path:
    """An MPEG-4 video whose frames all differ (grey level and a widening bar): `make_video` with `barred_frames`."""
    return make_video(path, n_frames, (w, h), frames=barred_frames)


# Tiny videos of the video tests: W x H, a moving texture at 30 fps.
W, H = 64, 48


def write_video(
    path: Path,
    codec: str = "libx264",
    n: int = 30,
    pts: list[int] | None = None,
    fmt: str | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """n frames of a moving texture at 30 fps (B-frames where the codec has them); `pts` (in 1/30 s) makes a
    variable frame rate."""
    return make_video(
        path, n, (W, H), codec, 30, moving_texture,
        pts=pts, fmt=fmt, options=options, container_options=container_options,
    )  # fmt: skip


def decoded(path: Path) -> list[av.VideoFrame]:
    """All frames of a plain, full PyAV decode: the reference for every count."""
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def packets(path: Path) -> list[av.Packet]:
    with av.open(str(path)) as container:
        return [p for p in container.demux(video=0) if p.size]


def truncated(src: Path, dst: Path, fraction: float) -> Path:
    """The first `fraction` of a file's bytes, as a download cut off."""
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def cut_inside_packet(src: Path, dst: Path, number: int) -> Path:
    """The file cut off halfway through its video packet `number`: a cut at a fraction of the bytes can fall on
    a packet boundary (where the encoder's output puts it), leaving a shorter file that decodes cleanly."""
    with av.open(str(src)) as container:
        packet = [p for p in container.demux(video=0) if p.size][number]
        pos, size = packet.pos, packet.size
    assert pos is not None and pos > 0
    dst.write_bytes(src.read_bytes()[: pos + size // 2])
    return dst
