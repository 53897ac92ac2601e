"""Where an upload goes in LightlyStudio, and what it reports back."""

from __future__ import annotations

import datetime as dt
import shlex
import threading
from dataclasses import dataclass
from pathlib import Path

from lightly_assets.errors import LightlyAssetsError

ANALYTICS_ENV = "LIGHTLY_STUDIO_ANALYTICS_ENABLED"
MISSING_TAG = "missing-file"
SPACE_KEY_PREFIX = "lightly-assets/precomputed"
DEFAULT_LOCK_TIMEOUT_S = 600.0
# Metadata on a video sample, written once all its frames are in: its absence marks a partial load. LightlyStudio
# shows every metadata key as a filter, and only numbers as range filters, so these are facts a user filters on, as
# numbers in units a user reads: frames, the file size in MB (to the byte: six decimals), the modification time as
# YYYYMMDDhhmmss in UTC (a number that reads as a date and sorts like one). Size and time to the second tell a
# changed file, as rsync's quick check does.
META_SIZE = "file_size_mb"
META_MTIME = "modified_utc"
META_FRAMES = "frames"
# The keys of earlier versions (raw bytes and nanoseconds): still read, so existing uploads are not reloaded. The
# text keys of the version before (`file_size`, `modified`) are not: those videos load once more and get numbers.
LEGACY_SIZE, LEGACY_MTIME, LEGACY_FRAMES = "source_size", "source_mtime_ns", "indexed_frames"


def file_size_mb(size: int) -> float:
    """The size in MB, exact to the byte (1 B = 0.000001 MB)."""
    return round(int(size) / 1_000_000, 6)


def modified_number(mtime_ns: int) -> int:
    """`20261201085912` for 2026-12-01 08:59:12 UTC: a date as a number LightlyStudio can filter by range."""
    moment = dt.datetime.fromtimestamp(int(mtime_ns) // 1_000_000_000, tz=dt.UTC)
    return int(moment.strftime("%Y%m%d%H%M%S"))


REQUIRED_COLUMNS = ("filename", "source", "kind", "frame", "pts", "label_name", "size", "mtime_ns")
# The database engine of lightly_studio is process-global: one upload per process at a time.
PROCESS_LOCK = threading.Lock()


class StudioError(LightlyAssetsError):
    """An upload that cannot be done or completed; the message names the dataset and the reason."""

    def __init__(self, dataset: str, reason: str) -> None:
        super().__init__(f"LightlyStudio dataset {dataset!r}: {reason}")
        self.dataset = dataset
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class StudioTarget:
    """Where to publish: a DuckDB file, or a PostgreSQL URL read from the environment variable named here.

    The URL is a secret: it is read only when connecting and never printed, put into errors or results.
    """

    db_file: Path | None = None
    db_url_env: str | None = None
    dataset_name: str
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S

    def __post_init__(self) -> None:
        if (self.db_file is None) == (self.db_url_env is None):
            raise StudioError(self.dataset_name, "set exactly one of db_file and db_url_env")
        if not self.dataset_name.strip():
            raise StudioError(self.dataset_name, "the dataset name is empty")

    def describe(self) -> str:
        """The target without secrets, for logs and metadata."""
        if self.db_file is not None:
            return f"duckdb:{Path(self.db_file).absolute()}"
        return f"postgresql URL from ${self.db_url_env}"

    def gui_command(self) -> str:
        """The shell command that opens LightlyStudio's UI on this database, offline, on the IPv4 loopback address
        (its own default, localhost, finds no free port where `/etc/hosts` has no `::1 localhost`)."""
        if self.db_file is not None:
            db = f"--db-file {shlex.quote(str(Path(self.db_file).absolute()))}"
        else:
            db = f'--db-url "${self.db_url_env}"'
        return f"{ANALYTICS_ENV}=false lightly-studio gui --host 127.0.0.1 {db}"


@dataclass(frozen=True)
class StudioDataset:
    """One LightlyStudio dataset written by an upload (a mixed dataset gives two)."""

    name: str
    sample_type: str
    dataset_id: str
    collection_id: str
    samples: int
    embeddings: int


@dataclass(frozen=True)
class UploadResult:
    """What the database holds for the dataset after an upload, read back by query.

    `samples` and `embeddings` count images and video frames (the rows of the CSV) that are not tagged
    `missing-file`; `videos` counts video samples. `dataset_id` and `collection_id` belong to the
    LightlyStudio dataset named like ours; its UI and HTTP API address it by `collection_id`.
    """

    target: str
    dataset_name: str
    dataset_id: str
    collection_id: str
    samples: int
    embeddings: int
    videos: int
    added: int
    removed: int
    unmatched: int
    gui_command: str
    datasets: tuple[StudioDataset, ...] = ()
