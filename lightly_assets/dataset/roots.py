"""The data root: which of its subfolders are datasets, and a cheap fingerprint that tells when one changed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lightly_assets.dataset.scan import DatasetError, fingerprint_digest, fingerprint_line, is_hidden, is_link

# Dagster refuses these in partition keys; a comma also breaks Dagster's multi-key selection syntax in the UI.
_FORBIDDEN = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0", ",", "[", "]")
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class DataRoot:
    """Datasets found under the data root, and folder names that cannot be partition keys (with the reason)."""

    datasets: dict[str, Path]
    invalid: dict[str, str]


def key_problem(name: str) -> str | None:
    """Why a folder name cannot be a Dagster partition key, or None."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "folder name is not valid UTF-8, which Dagster partition keys must be"
    bad = [s for s in _FORBIDDEN if s in name]
    if bad:
        return f"folder name contains {', '.join(repr(s) for s in bad)}, which Dagster partition keys cannot hold"
    if len(name) > MAX_KEY_LENGTH:
        return f"folder name is longer than {MAX_KEY_LENGTH} characters"
    if name.strip() != name:
        return "folder name starts or ends with whitespace"
    return None


def find_datasets(root: Path | str) -> DataRoot:
    """Every immediate, non-hidden subfolder of the data root is a dataset."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            root, "data root does not exist or is not a folder (set LIGHTLY_ASSETS_DATA_DIR or --data-dir)"
        )
    datasets: dict[str, Path] = {}
    invalid: dict[str, str] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if is_hidden(entry.name) or not entry.is_dir():
            continue
        problem = key_problem(entry.name)
        if problem:
            invalid[entry.name] = problem
        else:
            datasets[entry.name] = Path(entry.path)
    return DataRoot(datasets=datasets, invalid=invalid)


def fingerprint(dataset_dir: Path | str) -> str:
    """Hash of relative names, sizes and modification times of every non-hidden entry; reads no file contents.

    The walk is `os.walk`'s (top-down, symlinked folders listed but not entered), with folders and files sorted;
    it runs on every sensor tick, so it uses `os.scandir` with plain string paths (one stat per file, no
    `relpath`). `file_index` gets the same hash from its own scan's stats (`ScanResult.fingerprint`).
    """
    root = os.fspath(dataset_dir)
    return fingerprint_digest(_lines_per_folder(root), root)


def _lines_per_folder(root: str) -> Iterator[list[str]]:
    """Each folder's lines, in `os.walk`'s order with names sorted, one folder at a time."""
    stack = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue  # as os.walk: a folder that cannot be listed adds nothing
        dirs: list[tuple[str, os.DirEntry]] = []
        lines: list[str] = []
        for entry in sorted(entries, key=lambda e: e.name):
            name = entry.name
            if is_hidden(name):
                continue
            if _is_dir(entry):
                dirs.append((name, entry))
                continue
            try:
                st = entry.stat()
            except OSError:
                st = None
            lines.append(fingerprint_line(prefix + name, st))
        yield lines
        stack.extend((f"{prefix}{name}/", entry.path) for name, entry in reversed(dirs) if not is_link(entry))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False
