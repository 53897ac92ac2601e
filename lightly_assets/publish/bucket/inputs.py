"""Local inputs of a bucket publish: data files, per-file metadata and the CSV, validated."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from lightly_assets import columns
from lightly_assets.lightly_csv import EmbeddingsFileError, parse_embeddings_csv
from lightly_assets.publish.bucket.target import LABEL_NAME_PATH, LIGHTLY_DIR, TMP_SUFFIX, WEAK_LABEL_PATH, BucketError


@dataclass(frozen=True)
class Item:
    """One key to publish: a local file (data) or bytes we generate (.lightly)."""

    key: str  # relative to the dataset root
    size: int
    source: Path | None = None
    mtime_ns: int | None = None
    payload: bytes | None = None

    @property
    def record(self) -> dict[str, Any]:
        """Manifest entry: what lets a later run decide to skip this key."""
        if self.payload is not None:
            return {"size": self.size, "sha256": hashlib.sha256(self.payload).hexdigest()}
        return {"size": self.size, "mtime_ns": self.mtime_ns}


@dataclass(frozen=True)
class Inputs:
    """Validated local inputs."""

    data_items: list[Item]
    metadata_docs: dict[str, dict[str, Any]]  # metadata key -> document
    sample_sources: dict[str, str]  # CSV filename -> relative source file
    csv_bytes: bytes


def check_dataset_name(name: str) -> None:
    if not name or name in {".", ".."} or name.startswith(".") or re.search(r"[/\\\x00-\x1f]", name):
        raise BucketError(
            f"dataset name {name!r} is not usable as a bucket folder: it must be non-empty, "
            "without slashes or control characters, and not start with '.'"
        )


def _check_relative(name: str, where: str) -> str:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name or name != str(path):
        raise BucketError(f"{where}: {name!r} is not a clean relative POSIX path")
    if path.parts[0] == LIGHTLY_DIR:
        raise BucketError(f"{where}: {name!r} lies in {LIGHTLY_DIR}/, which Lightly reserves")
    return name


def metadata_key(filename: str) -> str:
    """Lightly's metadata key of a file: same relative path, extension replaced by .json."""
    return f"{LIGHTLY_DIR}/metadata/{PurePosixPath(filename).with_suffix('.json')}"


# The curation's files, published by `published_curation` beside Lightly's own: a publish of the dataset alone
# keeps them, so the five-asset chain never deletes what curation wrote.
CURATION_FILES = ("duplicates.csv", "selection.txt", "data_issues.csv")


def curation_key(filename: str) -> str:
    """Key of a curation output (`duplicates.csv`, `selection.txt`, `data_issues.csv`) beside Lightly's own files."""
    if filename not in CURATION_FILES:
        raise BucketError(f"{filename!r} is not a curation file ({', '.join(CURATION_FILES)})")
    return f"{LIGHTLY_DIR}/{filename}"


def csv_key(dataset_name: str) -> str:
    """Key of the embeddings CSV inside the dataset folder."""
    return f"{LIGHTLY_DIR}/embeddings/{dataset_name}.csv"


def _metadata_doc(filename: str, kind: str, label: int, label_name: str) -> dict[str, Any]:
    return {
        "file_name": filename,
        "type": kind,
        "metadata": {WEAK_LABEL_PATH: label, LABEL_NAME_PATH: label_name},
    }


def read_inputs(data_dir: Path, frame_index: pd.DataFrame, file_index: pd.DataFrame, csv_path: Path) -> Inputs:
    """The files that have samples in `frame_index`, their metadata documents and the CSV.

    Files of `file_index` without a sample (a video that could not be indexed or decoded) are not published,
    like they are not in the CSV: so they can neither appear in the target nor block it (e.g. by sharing a
    metadata name with another file).
    """
    columns.require(file_index, ("filename", "kind", "label", "label_name"), "file_index")
    columns.require(frame_index, ("filename", "source"), "frame_index")
    items: list[Item] = []
    docs: dict[str, dict[str, Any]] = {}
    owners: dict[str, str] = {}
    used = {str(source) for source in frame_index["source"]}
    for row in file_index.itertuples(index=False):
        if str(row.filename) not in used:
            continue
        name = _check_relative(str(row.filename), "file_index")
        kind = str(row.kind)
        if kind not in {"image", "video"}:
            raise BucketError(f"file_index: {name}: kind {kind!r} is neither 'image' nor 'video'")
        path = data_dir / name
        try:
            stat = path.stat()
        except OSError as exc:
            raise BucketError(f"{path}: cannot read input file ({exc.strerror})") from None
        items.append(Item(key=name, size=stat.st_size, source=path, mtime_ns=stat.st_mtime_ns))
        key = metadata_key(name)
        if key in owners:
            raise BucketError(
                f"{data_dir / owners[key]} and {path} both map to the Lightly metadata file {key}; rename one of them"
            )
        owners[key] = name
        try:
            label = int(row.label)
        except (TypeError, ValueError):
            raise BucketError(f"file_index: {name}: label {row.label!r} is not an integer") from None
        docs[key] = _metadata_doc(name, kind, label, str(row.label_name))
    files = {item.key for item in items}
    sources: dict[str, str] = {}
    for row in frame_index.itertuples(index=False):
        source = str(row.source)
        if source not in files:
            raise BucketError(f"frame_index: sample {row.filename!r} comes from {source!r}, which is not in file_index")
        sources[str(row.filename)] = source
    csv_bytes = _read_csv(csv_path, sources)
    return Inputs(items, docs, sources, csv_bytes)


def _read_csv(csv_path: Path, sources: Mapping[str, str]) -> bytes:
    """Read and check the local CSV; the bytes checked are the bytes uploaded."""
    try:
        data = csv_path.read_bytes()
    except OSError as exc:
        raise BucketError(f"{csv_path}: cannot read embeddings CSV ({exc.strerror})") from None
    _, filenames = parse_csv(data, str(csv_path))
    unknown = [f for f in filenames if f not in sources]
    if unknown:
        raise BucketError(
            f"{csv_path}: {len(unknown)} row(s) name samples missing from frame_index, e.g. {unknown[0]!r}"
        )
    return data


def parse_csv(data: bytes, where: str) -> tuple[int, list[str]]:
    """(embedding dim, filenames) of Lightly CSV bytes, read by the project's one CSV reader."""
    try:
        filenames, matrix, _ = parse_embeddings_csv(data.decode("utf-8"), where)
    except UnicodeDecodeError:
        raise BucketError(f"{where}: embeddings CSV is not UTF-8") from None
    except EmbeddingsFileError as exc:
        raise BucketError(str(exc)) from None
    return int(matrix.shape[1]), filenames


def is_our_tmp(key: str) -> bool:
    """A temporary file left by an interrupted write on a rename-based file system."""
    name = key.rsplit("/", 1)[-1]
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
