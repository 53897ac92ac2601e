"""The data root: which of its subfolders are datasets, and a cheap fingerprint that tells when one changed."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from lightly_assets.dataset.scan import DatasetError, is_hidden

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
    it runs on every sensor tick and every `file_index`, so it uses `os.scandir` with plain string paths (one
    stat per file, no `relpath`) and hashes a folder's lines at once.
    """
    digest = hashlib.sha256()
    root = os.fspath(dataset_dir)
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
                lines.append(f"{prefix}{name}\0{st.st_size}\0{st.st_mtime_ns}\n")
            except OSError:
                lines.append(f"{prefix}{name}\0?\n")
        if lines:
            digest.update("".join(lines).encode(errors="replace"))
        stack.extend((f"{prefix}{name}/", entry.path) for name, entry in reversed(dirs) if not _is_link(entry))
    custom = os.path.join(root, ".lightly", "custom_embeddings.csv")  # hidden, yet an input of the chain
    if os.path.isfile(custom):
        st = os.stat(custom)
        digest.update(f".lightly/custom_embeddings.csv\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_link(entry: os.DirEntry) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False
