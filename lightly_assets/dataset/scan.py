"""Scanning a dataset folder into Lightly's view of it: which files, in which order, with which weak labels.

The order and labels of image datasets reproduce `lightly.data.LightlyDataset` (torchvision's `ImageFolder`
for subfolders, a sorted flat listing otherwise); videos get one label each in sorted path order, because
Lightly's own video order depends on the file system. Everything that is not used is reported, never dropped
silently.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from operator import itemgetter
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lightly_assets.columns import FILE_INDEX_COLUMNS
from lightly_assets.dataset.video import VIDEO_EXTENSIONS
from lightly_assets.errors import LightlyAssetsError


class DatasetError(LightlyAssetsError):
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
    """The usable files of a dataset (as the `file_index` table), everything left out, and the folder's
    fingerprint (`roots.fingerprint`) from the same walk's stats, or None where this walk cannot give it."""

    files: pd.DataFrame
    skipped: list[Skipped] = field(default_factory=list)
    layout: str = "flat"
    fingerprint: str | None = None


# (name, kind, size, mtime_ns): plain tuples, since the walk makes one per file and sorts them by name.
_Entry = tuple[str, str, int, int]


@dataclass
class _Folder:
    """One scanned folder: its relative path ('' for the dataset root) and its candidate files."""

    rel: str
    path: str
    entries: list[_Entry] = field(default_factory=list)
    lines: list[str] | None = field(default_factory=list)  # the fingerprint's lines; None: reached through a link

    def rel_of(self, name: str) -> str:
        return f"{self.rel}/{name}" if self.rel else name


@cache
def image_extensions() -> frozenset[str]:
    """Every extension the installed Pillow can open (lower case, with dot), video extensions excluded."""
    Image.init()
    exts = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return frozenset(exts - VIDEO_EXTENSIONS)


def is_hidden(name: str) -> bool:
    """Hidden files and folders (leading dot) are ignored, as users expect of `.DS_Store` or `.ipynb_checkpoints`."""
    return name.startswith(".")


def _kinds() -> dict[str, str]:
    kinds = dict.fromkeys(image_extensions(), "image")
    kinds.update(dict.fromkeys(VIDEO_EXTENSIONS, "video"))
    return kinds


def _common_kinds() -> dict[str, str]:
    """`_kinds` for Pillow's common formats (`Image.preinit`: JPEG, PNG, BMP, GIF, PPM, which decoding loads anyway)
    and videos: a folder of those is classified without importing Pillow's ~45 other plugins (`Image.init`)."""
    Image.preinit()
    common = {ext.lower() for ext, fmt in Image.EXTENSION.items() if fmt in Image.OPEN} - VIDEO_EXTENSIONS
    return dict.fromkeys(common, "image") | dict.fromkeys(VIDEO_EXTENSIONS, "video")


def fingerprint_line(rel: str, st: os.stat_result | None) -> str:
    """One non-folder entry in a dataset's fingerprint: its relative path, size and modification time."""
    return f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n" if st is not None else f"{rel}\0?\n"


def fingerprint_digest(blocks: Iterable[list[str]], root: str) -> str:
    """The fingerprint of the folders' lines, in `os.walk`'s order (top-down, folders and files sorted by name),
    and of the custom embeddings file (hidden, yet an input of the chain)."""
    digest = hashlib.sha256()
    for lines in blocks:
        if lines:
            digest.update("".join(lines).encode(errors="replace"))
    custom = os.path.join(root, ".lightly", "custom_embeddings.csv")
    if os.path.isfile(custom):
        digest.update(fingerprint_line(".lightly/custom_embeddings.csv", os.stat(custom)).encode())
    return digest.hexdigest()[:16]


def _walk_fingerprint(folders: list[_Folder], root: str) -> str:
    """The fingerprint from the walk's own stats: folders in preorder with sorted names (their path components
    sorted), lines sorted (a line sorts as its name: NUL ends the name)."""
    walked = sorted((f for f in folders if f.lines is not None), key=lambda f: f.rel.split("/") if f.rel else [])
    return fingerprint_digest((sorted(f.lines or ()) for f in walked), root)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _walk(root: str, skipped: list[Skipped]) -> tuple[list[_Folder], bool]:
    """Scan every folder below `root`, following symlinks like torchvision does, but never in a loop; also whether
    the walk saw every folder the fingerprint enters (`os.walk`'s: symlinked folders listed, not entered).

    This is the hot loop of `file_index` (one stat per file is the floor for sizes and times, and the fingerprint's
    lines come from the same stats), so it works on plain strings: no relpath, no Path objects.
    """
    kinds, complete = _common_kinds(), False  # every extension Pillow opens only once one is not a common one
    root_stat = os.stat(root)
    stack: list[tuple[str, str, frozenset[tuple[int, int]], bool]] = [
        ("", root, frozenset({(root_stat.st_dev, root_stat.st_ino)}), False)
    ]
    folders: list[_Folder] = []
    fingerprinted = True
    while stack:
        rel_folder, folder, seen, linked = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            skipped.append(Skipped(rel_folder, f"folder cannot be read: {exc.strerror or exc}"))
            continue
        current = _Folder(rel_folder, folder, lines=None if linked else [])
        folders.append(current)
        prefix = rel_folder + "/" if rel_folder else ""
        append = current.entries.append
        line = current.lines.append if current.lines is not None else _no_line
        for entry in entries:
            name = entry.name
            if name[0] == ".":
                continue
            dot = name.rfind(".")
            kind = kinds.get(name[dot:].lower()) if dot > 0 else None
            if kind is None and dot > 0 and not complete:
                kinds, complete = _kinds(), True
                kind = kinds.get(name[dot:].lower())
            if kind is not None and name.isascii() and _is_file(entry):  # the common case: one stat, no strings
                try:
                    st = entry.stat()
                except OSError as exc:
                    skipped.append(Skipped(prefix + name, _stat_problem(entry, exc)))
                    line(fingerprint_line(prefix + name, None))
                    continue
                line(f"{prefix}{name}\0{st.st_size}\0{st.st_mtime_ns}\n")  # fingerprint_line's, inlined
                if st.st_size:
                    append((name, kind, st.st_size, st.st_mtime_ns))
                else:
                    skipped.append(Skipped(prefix + name, "empty file (0 bytes)"))
                continue
            rel = prefix + name
            try:
                st = entry.stat()
            except OSError as exc:
                st, problem = None, _stat_problem(entry, exc)
            if st is not None and stat.S_ISDIR(st.st_mode):
                key, link = (st.st_dev, st.st_ino), is_link(entry)
                if not _utf8(name) or key in seen or kind == "video":
                    fingerprinted = fingerprinted and link  # a folder the fingerprint enters, not walked here
                if not _utf8(name):
                    skipped.append(Skipped(_shown(rel), "name is not valid UTF-8"))
                elif key in seen:
                    skipped.append(Skipped(rel, "symlink loop: folder links back to one of its parents"))
                elif kind == "video":
                    skipped.append(Skipped(rel, "is a folder, not a video file"))
                else:
                    stack.append((rel, entry.path, seen | {key}, linked or link))
                continue
            line(fingerprint_line(rel, st))
            if not _utf8(name):
                skipped.append(Skipped(_shown(rel), "name is not valid UTF-8"))
            elif st is None:
                skipped.append(Skipped(rel, problem))
            elif kind is None:
                skipped.append(Skipped(rel, "unsupported file type"))
            elif not stat.S_ISREG(st.st_mode):
                skipped.append(Skipped(rel, "not a regular file"))
            elif st.st_size == 0:
                skipped.append(Skipped(rel, "empty file (0 bytes)"))
            else:
                append((name, kind, st.st_size, st.st_mtime_ns))
    return folders, fingerprinted


def _no_line(line: str) -> None:
    """Folders reached through a symlink are not in the fingerprint."""


def _shown(rel: str) -> str:
    """A path that is not valid UTF-8, shown with its bad bytes escaped (bad\\xff.jpg)."""
    return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_link(entry: os.DirEntry) -> bool:
    """`DirEntry.is_symlink`, False where it cannot tell."""
    try:
        return entry.is_symlink()
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    """`DirEntry.is_file` follows symlinks and raises on a loop (ELOOP); such entries take the slow path."""
    try:
        return entry.is_file()
    except OSError:
        return False


def _stat_problem(entry: os.DirEntry, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if entry.is_symlink() and not os.path.exists(entry.path):
        return "broken symlink"
    return f"cannot stat: {exc.strerror or exc}"


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


def _file_problem(path: str, kind: str) -> str | None:
    if kind == "image":
        return _image_problem(path)
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    return None


def _verify(folders: list[_Folder], skipped: list[Skipped], workers: int) -> None:
    """Open every file's header in parallel, so unreadable files are reported here rather than in a model run."""
    for folder in folders:
        paths = [os.path.join(folder.path, e[0]) for e in folder.entries]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            problems = list(pool.map(_file_problem, paths, [e[1] for e in folder.entries]))
        skipped.extend(Skipped(folder.rel_of(e[0]), p) for e, p in zip(folder.entries, problems, strict=True) if p)
        folder.entries = [e for e, p in zip(folder.entries, problems, strict=True) if p is None]


class _Columns:
    """The file_index columns, filled a folder at a time (the per-file work is list extends)."""

    def __init__(self) -> None:
        self.filename: list[str] = []
        self.kind: list[str] = []
        self.label: list[int] = []
        self.label_name: list[str] = []
        self.size: list[int] = []
        self.mtime_ns: list[int] = []

    def add(self, folder: _Folder, entries: list[_Entry], label: int, label_name: str) -> None:
        prefix = folder.rel + "/" if folder.rel else ""
        self.filename.extend([prefix + e[0] for e in entries])
        self.kind.extend([e[1] for e in entries])
        self.label.extend([label] * len(entries))
        self.label_name.extend([label_name] * len(entries))
        self.size.extend([e[2] for e in entries])
        self.mtime_ns.extend([e[3] for e in entries])

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "filename": self.filename,
                "kind": self.kind,
                "label": np.array(self.label, dtype=np.int64),
                "label_name": self.label_name,
                "size": np.array(self.size, dtype=np.int64),
                "mtime_ns": np.array(self.mtime_ns, dtype=np.int64),
            },
            columns=pd.Index(FILE_INDEX_COLUMNS),
        )


def _top(rel: str) -> str:
    return rel.split("/", 1)[0]


def _label(folders: list[_Folder], skipped: list[Skipped], dataset: str) -> tuple[pd.DataFrame, str]:
    """Assign Lightly's weak labels: videos first (one each, sorted by path), then the image groups after them.

    Image order is torchvision's `ImageFolder`: classes sorted, then `sorted(os.walk(class_dir))` (folders by path
    string) and sorted file names within each folder; a flat folder is sorted by name.
    """
    cols = _Columns()
    videos = sorted((f.rel_of(e[0]), f, e) for f in folders for e in f.entries if e[1] == "video")
    for i, (rel, folder, entry) in enumerate(videos):
        cols.add(folder, [entry], i, rel)
    offset = len(videos)
    by_name = itemgetter(0)  # names are unique in a folder: sorting by them alone is the tuples' order, faster
    image_folders = [
        (f, sorted((e for e in f.entries if e[1] == "image"), key=by_name))
        for f in sorted(folders, key=lambda f: f.rel)
    ]
    image_folders = [(f, images) for f, images in image_folders if images]
    has_classes = any(f.rel for f, _ in image_folders)
    layout = "subfolders" if has_classes or any("/" in rel for rel, _, _ in videos) else "flat"
    if not has_classes:
        for folder, images in image_folders:
            cols.add(folder, images, offset, dataset)
        return cols.frame(), layout
    reason = "image at the dataset root beside weak-label folders (Lightly ignores it)"
    classes = sorted({_top(f.rel) for f, _ in image_folders if f.rel})
    order = {top: offset + i for i, top in enumerate(classes)}
    for folder, images in sorted(image_folders, key=lambda item: (_top(item[0].rel), item[0].rel)):
        if not folder.rel:
            skipped.extend(Skipped(e[0], reason) for e in images)
            continue
        top = _top(folder.rel)
        cols.add(folder, images, order[top], top)
    return cols.frame(), layout


def scan_dataset(dataset_dir: Path | str, verify: bool = False, workers: int = 8) -> ScanResult:
    """List the usable files of one dataset folder, in Lightly's order, with weak labels and skip reasons.

    `verify` also opens every image header (about 100x the cost of the listing); without it, unreadable
    contents are reported by the embedding step, which decodes every file anyway.
    """
    root = os.fspath(dataset_dir)
    if not os.path.exists(root):
        raise DatasetError(root, "dataset folder does not exist")
    if not os.path.isdir(root):
        raise DatasetError(root, "is not a folder")
    skipped: list[Skipped] = []
    folders, fingerprinted = _walk(root, skipped)
    seen = _walk_fingerprint(folders, root) if fingerprinted else None
    if verify:
        _verify(folders, skipped, workers)
    files, layout = _label(folders, skipped, os.path.basename(os.path.normpath(root)))
    skipped.sort(key=lambda s: s.path)
    return ScanResult(files=files, skipped=skipped, layout=layout, fingerprint=seen)


def require_usable(result: ScanResult, dataset_dir: Path | str) -> None:
    """A dataset with nothing usable is an error, with the reasons of what was found instead."""
    if len(result.files):
        return
    detail = "; ".join(f"{s.path}: {s.reason}" for s in result.skipped[:5])
    raise DatasetError(dataset_dir, "no usable image or video file" + (f" ({detail})" if detail else ""))
