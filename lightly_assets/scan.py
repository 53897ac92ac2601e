"""Scanning a dataset folder into Lightly's view of it: which files, in which order, with which weak labels.

The order and labels of image datasets reproduce `lightly.data.LightlyDataset` (torchvision's `ImageFolder`
for subfolders, a sorted flat listing otherwise); videos get one label each in sorted path order, because
Lightly's own video order depends on the file system. Everything that is not used is reported, never dropped
silently.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pandas as pd
from PIL import Image

from lightly_assets.video import VIDEO_EXTENSIONS

FILE_INDEX_COLUMNS = ["filename", "kind", "label", "label_name", "size", "mtime_ns"]


class DatasetError(ValueError):
    """A dataset folder that cannot be used at all; the message names the folder and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class Skipped:
    """A file or folder that is not used, with the reason shown to the user."""

    path: str
    reason: str


@dataclass
class ScanResult:
    """The usable files of a dataset (as the `file_index` table) and everything left out."""

    files: pd.DataFrame
    skipped: list[Skipped] = field(default_factory=list)
    layout: str = "flat"


@dataclass(frozen=True)
class _Entry:
    rel: str
    top: str | None
    kind: str
    size: int
    mtime_ns: int
    path: str


@cache
def image_extensions() -> frozenset[str]:
    """Every extension the installed Pillow can open (lower case, with dot), video extensions excluded."""
    Image.init()
    exts = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return frozenset(exts - VIDEO_EXTENSIONS)


def is_hidden(name: str) -> bool:
    """Hidden files and folders (leading dot) are ignored, as users expect of `.DS_Store` or `.ipynb_checkpoints`."""
    return name.startswith(".")


def file_kind(name: str) -> str | None:
    """'image', 'video' or None, by case-insensitive extension."""
    ext = os.path.splitext(name)[1].lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if ext in image_extensions():
        return "image"
    return None


def _rel(path: str, root: str) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _walk(root: str, skipped: list[Skipped]) -> Iterator[_Entry]:
    """Yield candidate files below `root`, following symlinks like torchvision does, but never in a loop."""
    root_stat = os.stat(root)
    stack: list[tuple[str, frozenset[tuple[int, int]]]] = [
        (root, frozenset({(root_stat.st_dev, root_stat.st_ino)}))
    ]
    while stack:
        folder, seen = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            skipped.append(Skipped(_rel(folder, root), f"folder cannot be read: {exc.strerror or exc}"))
            continue
        for entry in entries:
            if is_hidden(entry.name):
                continue
            rel = _rel(entry.path, root)
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                skipped.append(Skipped(rel.encode("utf-8", "replace").decode(), "name is not valid UTF-8"))
                continue
            try:
                st = entry.stat()
            except OSError as exc:
                reason = "symlink loop" if exc.errno == 40 else f"cannot stat: {exc.strerror or exc}"
                if entry.is_symlink() and not os.path.exists(entry.path):
                    reason = "broken symlink" if exc.errno != 40 else reason
                skipped.append(Skipped(rel, reason))
                continue
            top = rel.split("/", 1)[0] if "/" in rel else None
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    skipped.append(Skipped(rel, "symlink loop: folder links back to one of its parents"))
                elif file_kind(entry.name) == "video":
                    skipped.append(Skipped(rel, "is a folder, not a video file"))
                else:
                    stack.append((entry.path, seen | {key}))
                continue
            kind = file_kind(entry.name)
            if not stat.S_ISREG(st.st_mode):
                skipped.append(Skipped(rel, "not a regular file"))
            elif kind is None:
                skipped.append(Skipped(rel, "unsupported file type"))
            elif st.st_size == 0:
                skipped.append(Skipped(rel, "empty file (0 bytes)"))
            else:
                yield _Entry(rel, top, kind, st.st_size, st.st_mtime_ns, entry.path)


def _image_problem(path: str) -> str | None:
    """Why Pillow cannot open this image's header, or None; full decoding is left to the embedding step."""
    try:
        with Image.open(path) as img:
            img.size  # noqa: B018 - touching the header is the check
    except PermissionError:
        return "permission denied"
    except Image.DecompressionBombError as exc:
        return f"image too large: {exc}"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"not a readable image: {exc}"
    return None


def _file_problem(entry: _Entry) -> str | None:
    if entry.kind == "image":
        return _image_problem(entry.path)
    try:
        with open(entry.path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    return None


def _verify(entries: list[_Entry], workers: int) -> tuple[list[_Entry], list[Skipped]]:
    """Open every file's header in parallel, so unreadable files are reported here rather than deep in a model run."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        problems = list(pool.map(_file_problem, entries, chunksize=64))
    good = [e for e, p in zip(entries, problems) if p is None]
    bad = [Skipped(e.rel, p) for e, p in zip(entries, problems) if p is not None]
    return good, bad


def _torchvision_order(entry: _Entry) -> tuple[str, str]:
    """`sorted(os.walk(class_dir))` then `sorted(fnames)`: sort by containing folder path, then file name."""
    folder, _, name = entry.rel.rpartition("/")
    return (folder, name)


def _label(entries: list[_Entry], skipped: list[Skipped], dataset: str) -> tuple[list[tuple], str]:
    """Assign Lightly's weak labels: videos first (one each, sorted), then image groups after them."""
    videos = sorted((e for e in entries if e.kind == "video"), key=lambda e: e.rel)
    images = [e for e in entries if e.kind == "image"]
    rows = [(e, i, e.rel) for i, e in enumerate(videos)]
    offset = len(videos)
    has_folders = any(e.top is not None for e in images)
    if not has_folders:
        for e in sorted(images, key=lambda e: e.rel):
            rows.append((e, offset, dataset))
        return rows, "flat" if not any(e.top for e in videos) else "subfolders"
    for e in images:
        if e.top is None:
            skipped.append(Skipped(e.rel, "image at the dataset root beside weak-label folders (Lightly ignores it)"))
    classes = sorted({e.top for e in images if e.top is not None})
    for idx, cls in enumerate(classes):
        members = sorted((e for e in images if e.top == cls), key=_torchvision_order)
        rows.extend((e, offset + idx, cls) for e in members)
    return rows, "subfolders"


def scan_dataset(dataset_dir: Path | str, verify: bool = True, workers: int = 8) -> ScanResult:
    """List the usable files of one dataset folder, in Lightly's order, with weak labels and skip reasons."""
    root = os.fspath(dataset_dir)
    if not os.path.exists(root):
        raise DatasetError(root, "dataset folder does not exist")
    if not os.path.isdir(root):
        raise DatasetError(root, "is not a folder")
    skipped: list[Skipped] = []
    entries = list(_walk(root, skipped))
    if verify:
        entries, bad = _verify(entries, workers)
        skipped.extend(bad)
    rows, layout = _label(entries, skipped, os.path.basename(os.path.normpath(root)))
    files = pd.DataFrame(
        [(e.rel, e.kind, label, name, e.size, e.mtime_ns) for e, label, name in rows],
        columns=FILE_INDEX_COLUMNS,
    ).astype({"label": "int64", "size": "int64", "mtime_ns": "int64"})
    skipped.sort(key=lambda s: s.path)
    return ScanResult(files=files, skipped=skipped, layout=layout)


def require_usable(result: ScanResult, dataset_dir: Path | str) -> None:
    """A dataset with nothing usable is an error, with the reasons of what was found instead."""
    if len(result.files):
        return
    detail = "; ".join(f"{s.path}: {s.reason}" for s in result.skipped[:5])
    raise DatasetError(dataset_dir, "no usable image or video file" + (f" ({detail})" if detail else ""))
