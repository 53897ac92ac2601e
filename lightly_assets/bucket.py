"""Publish a dataset as a Lightly cloud-bucket datasource, through fsspec.

Layout written under ``<url>/<dataset_name>/`` (the folder serves as both the Lightly
*input* and *Lightly* datasource, so relative filenames match everywhere)::

    <relative path of every input file>           copies of the images and videos
    .lightly/embeddings/<dataset_name>.csv        the Lightly embeddings CSV, byte for byte
    .lightly/metadata/schema.json                 custom-metadata schema (weak label, label name)
    .lightly/metadata/<path without ext>.json     one metadata file per image and per video
    .lightly/lightly_assets_manifest.json         the keys this module owns (for clean-up)

Metadata files follow Lightly's documented format: ``{"file_name": ..., "type": "image" |
"video", "metadata": {...}}``. A video's file is valid for all of its frames, so frames
need no files of their own.

Atomicity: on object stores (S3, GCS, Azure, memory) every key is written with one PUT (or
one multipart upload); the object only becomes visible when that request completes, so a
reader sees the old object or the new one, never a partial one. A copy-to-temp-then-move
would add a second request and a visible temporary key for no gain. File systems that can
show partial files (``file://``, anything else) get a hidden temporary file next to the
target, renamed into place with ``os.replace`` / ``fs.mv``.

Ownership: only keys recorded in the manifest are ever deleted; the manifest is widened
*before* uploading, so an interrupted run leaves nothing untracked.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

logger = logging.getLogger(__name__)

LIGHTLY_DIR = ".lightly"
MANIFEST_KEY = f"{LIGHTLY_DIR}/lightly_assets_manifest.json"
SCHEMA_KEY = f"{LIGHTLY_DIR}/metadata/schema.json"
MANIFEST_FORMAT = "lightly-assets-bucket/1"
TMP_SUFFIX = ".lightly-assets-tmp"

WEAK_LABEL_PATH = "weak_label"
LABEL_NAME_PATH = "label_name"
SCHEMA_ENTRIES: tuple[dict[str, Any], ...] = (
    {
        "name": "Weak label",
        "path": WEAK_LABEL_PATH,
        "defaultValue": -1,
        "valueDataType": "CATEGORICAL_INT",
    },
    {
        "name": "Label name",
        "path": LABEL_NAME_PATH,
        "defaultValue": "undefined",
        "valueDataType": "CATEGORICAL_STRING",
    },
)

#: storage option -> environment variables, first one set wins (S3 targets).
S3_STORAGE_OPTIONS_ENV: Mapping[str, tuple[str, ...]] = {
    "key": ("AWS_ACCESS_KEY_ID",),
    "secret": ("AWS_SECRET_ACCESS_KEY",),
    "token": ("AWS_SESSION_TOKEN",),
    "endpoint_url": (
        "LIGHTLY_ASSETS_S3_ENDPOINT",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL",
    ),
    "region_name": ("LIGHTLY_ASSETS_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
}
_S3_SCHEMES = {"s3", "s3a"}
_CLIENT_KWARGS = {"endpoint_url", "region_name"}  # go into s3fs client_kwargs
_PUBLIC_OPTIONS = _CLIENT_KWARGS  # every other option value is treated as a secret
_SINGLE_PUT_SCHEMES = _S3_SCHEMES | {"gs", "gcs", "az", "abfs", "abfss", "memory"}
_UNREACHABLE_ERRORS = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ProxyConnectionError",
    "ClientConnectorError",
    "ClientOSError",
    "ServerDisconnectedError",
    "FSTimeoutError",
}

ProgressCallback = Callable[[str, str], None]


class BucketError(ValueError):
    """Publishing failed; the message names the target and reason, never a secret."""


@dataclass(frozen=True)
class BucketTarget:
    """Where to publish: an fsspec URL plus the *names* of env vars holding credentials.

    The dataclass never stores secret values, so its repr and any metadata derived
    from it are safe to log. ``storage_options_env`` maps an fsspec storage option to
    one env var name or several (first set wins); ``None`` means the S3 defaults for
    ``s3://`` URLs and nothing for other protocols.
    """

    url: str
    storage_options_env: Mapping[str, str | Sequence[str]] | None = None
    timeout_s: float = 30.0
    retries: int = 3
    checkpoint_s: float = 30.0  # how often finished uploads are recorded, for resuming

    @property
    def scheme(self) -> str:
        """The URL scheme; ``file`` for plain paths."""
        return self.url.split("://", 1)[0].lower() if "://" in self.url else "file"

    @property
    def safe_url(self) -> str:
        """The URL with any user-info and query string masked."""
        return _mask_url(self.url)

    def env_names(self) -> dict[str, tuple[str, ...]]:
        """Effective storage option -> env var names."""
        if self.storage_options_env is None:
            mapping = S3_STORAGE_OPTIONS_ENV if self.scheme in _S3_SCHEMES else {}
        else:
            mapping = self.storage_options_env
        return {opt: (names,) if isinstance(names, str) else tuple(names) for opt, names in mapping.items()}

    def resolved_options(self) -> dict[str, str]:
        """Option values read from the environment now (may contain secrets: never log)."""
        resolved: dict[str, str] = {}
        for option, names in self.env_names().items():
            value = next((os.environ[n] for n in names if os.environ.get(n)), None)
            if value is not None:
                resolved[option] = value
        return resolved

    def endpoint(self) -> str:
        """Secret-free description of the endpoint that will be contacted."""
        endpoint = self.resolved_options().get("endpoint_url")
        if endpoint:
            return _mask_url(endpoint)
        return "the default AWS endpoint" if self.scheme in _S3_SCHEMES else self.scheme

    def describe(self) -> dict[str, str]:
        """Secret-free summary for logs and asset metadata."""
        names = self.env_names()
        resolved = self.resolved_options()
        creds = [n for opt, ns in names.items() if opt not in _PUBLIC_OPTIONS for n in ns]
        used = [opt for opt in resolved if opt not in _PUBLIC_OPTIONS]
        return {
            "url": self.safe_url,
            "endpoint": self.endpoint(),
            "credential_env_vars": ", ".join(creds) or "none",
            "credentials_set": ", ".join(used) or "none (default chain)",
        }

    def __repr__(self) -> str:
        return (
            f"BucketTarget(url={self.safe_url!r}, "
            f"storage_options_env={self.env_names()!r}, "
            f"timeout_s={self.timeout_s!r}, retries={self.retries!r}, checkpoint_s={self.checkpoint_s!r})"
        )


@dataclass(frozen=True)
class BucketResult:
    """What a publish did; counts come from reading the bucket back after the upload."""

    url: str  # the target URL, secret-free; the dataset lives at dataset_url
    dataset_name: str
    dataset_url: str
    csv_key: str  # relative to dataset_url
    files_written: tuple[str, ...]  # keys relative to dataset_url
    files_skipped: tuple[str, ...]
    files_removed: tuple[str, ...]
    samples: int  # CSV rows read back whose image or video has its metadata key in the bucket
    embeddings: int  # CSV rows read back from the bucket
    embedding_dim: int  # embedding columns of the CSV read back
    metadata_files: int  # per-file metadata keys found in the bucket (schema excluded)
    data_files: int  # dataset files found in the bucket after the upload
    target: dict[str, str] = field(default_factory=dict)

    def as_metadata(self) -> dict[str, str | int]:
        """Flat, secret-free values for Dagster asset metadata."""
        return {
            "url": self.url,
            "dataset_name": self.dataset_name,
            "dataset_url": self.dataset_url,
            "csv_key": self.csv_key,
            "files_written": len(self.files_written),
            "files_skipped": len(self.files_skipped),
            "files_removed": len(self.files_removed),
            "samples": self.samples,
            "embeddings": self.embeddings,
            "embedding_dim": self.embedding_dim,
            "metadata_files": self.metadata_files,
            "data_files": self.data_files,
            **{f"target_{k}": v for k, v in self.target.items()},
        }


@dataclass(frozen=True)
class _Item:
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
class _Inputs:
    """Validated local inputs."""

    data_items: list[_Item]
    metadata_docs: dict[str, dict[str, Any]]  # metadata key -> document
    sample_sources: dict[str, str]  # CSV filename -> relative source file
    csv_bytes: bytes


def publish_to_bucket(
    target: BucketTarget,
    dataset_name: str,
    data_dir: Path,
    frame_index: pd.DataFrame,
    file_index: pd.DataFrame,
    csv_path: Path,
    copy_files: bool = True,
    on_progress: ProgressCallback | None = None,
) -> BucketResult:
    """Publish one dataset under ``<target.url>/<dataset_name>/`` and verify it by reading back.

    ``data_dir`` is the dataset folder that ``file_index`` filenames are relative to.
    ``copy_files=False`` writes only ``.lightly/`` (the files are already in the input
    datasource). ``on_progress(event, key)`` is called with ``written`` / ``skipped`` /
    ``removed`` for every key. Raises ``BucketError`` for bad input and storage failures.
    """
    _check_dataset_name(dataset_name)
    inputs = _read_inputs(Path(data_dir), frame_index, file_index, Path(csv_path))
    session = _Session(target, dataset_name, on_progress)
    try:
        return session.publish(inputs, copy_files)
    except BucketError:
        raise
    except Exception as exc:  # storage errors escaping a step: still never leak
        raise session.error(exc) from None


# ---------------------------------------------------------------- local inputs


def _check_dataset_name(name: str) -> None:
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


def _require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise BucketError(f"{what} lacks column(s) {', '.join(missing)}")


def metadata_key(filename: str) -> str:
    """Lightly's metadata key of a file: same relative path, extension replaced by .json."""
    return f"{LIGHTLY_DIR}/metadata/{PurePosixPath(filename).with_suffix('.json')}"


def csv_key(dataset_name: str) -> str:
    """Key of the embeddings CSV inside the dataset folder."""
    return f"{LIGHTLY_DIR}/embeddings/{dataset_name}.csv"


def _metadata_doc(filename: str, kind: str, label: int, label_name: str) -> dict[str, Any]:
    return {
        "file_name": filename,
        "type": kind,
        "metadata": {WEAK_LABEL_PATH: label, LABEL_NAME_PATH: label_name},
    }


def _read_inputs(data_dir: Path, frame_index: pd.DataFrame, file_index: pd.DataFrame, csv_path: Path) -> _Inputs:
    _require_columns(file_index, ("filename", "kind", "label", "label_name"), "file_index")
    _require_columns(frame_index, ("filename", "source"), "frame_index")
    items: list[_Item] = []
    docs: dict[str, dict[str, Any]] = {}
    owners: dict[str, str] = {}
    for row in file_index.itertuples(index=False):
        name = _check_relative(str(row.filename), "file_index")
        kind = str(row.kind)
        if kind not in {"image", "video"}:
            raise BucketError(f"file_index: {name}: kind {kind!r} is neither 'image' nor 'video'")
        path = data_dir / name
        try:
            stat = path.stat()
        except OSError as exc:
            raise BucketError(f"{path}: cannot read input file ({exc.strerror})") from None
        items.append(_Item(key=name, size=stat.st_size, source=path, mtime_ns=stat.st_mtime_ns))
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
    return _Inputs(items, docs, sources, csv_bytes)


def _read_csv(csv_path: Path, sources: Mapping[str, str]) -> bytes:
    """Read and check the local CSV; the bytes checked are the bytes uploaded."""
    try:
        data = csv_path.read_bytes()
    except OSError as exc:
        raise BucketError(f"{csv_path}: cannot read embeddings CSV ({exc.strerror})") from None
    try:
        _, filenames = _parse_csv(data)
    except ValueError as exc:
        raise BucketError(f"{csv_path}: {exc}") from None
    unknown = [f for f in filenames if f not in sources]
    if unknown:
        raise BucketError(
            f"{csv_path}: {len(unknown)} row(s) name samples missing from frame_index, e.g. {unknown[0]!r}"
        )
    return data


def _parse_csv(data: bytes) -> tuple[int, list[str]]:
    """Return (embedding dim, filenames) of a Lightly CSV, checking its header."""
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
    if not rows:
        raise ValueError("embeddings CSV is empty")
    header = rows[0]
    dim = len(header) - 2
    expected = ["filenames", *(f"embedding_{i}" for i in range(dim)), "labels"]
    if dim < 1 or header != expected:
        raise ValueError("embeddings CSV header must be 'filenames, embedding_0..embedding_{D-1}, labels'")
    bad = next((i for i, r in enumerate(rows[1:], 2) if len(r) != len(header)), None)
    if bad is not None:
        raise ValueError(f"embeddings CSV line {bad} has a different number of columns")
    return dim, [r[0] for r in rows[1:]]


def _is_our_tmp(key: str) -> bool:
    """A temporary file left by an interrupted write on a rename-based file system."""
    name = key.rsplit("/", 1)[-1]
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def _json_bytes(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# ---------------------------------------------------------------- storage side


def _mask_url(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _userinfo(url: str) -> list[str]:
    """User name and password embedded in a URL, to be masked wherever they show up."""
    try:
        parts = urlsplit(url)
        return [v for v in (parts.username, parts.password) if v]
    except ValueError:
        return []


class _Session:
    """One publish run against one target: filesystem handle, current step, secrets."""

    def __init__(self, target: BucketTarget, dataset: str, on_progress: ProgressCallback | None):
        self.target = target
        self.dataset = dataset
        self.on_progress = on_progress
        self.step = "connecting"
        self.options = target.resolved_options()
        self.secrets = [v for k, v in self.options.items() if k not in _PUBLIC_OPTIONS]
        for url in (target.url, self.options.get("endpoint_url", "")):
            self.secrets += _userinfo(url)
        self.url = f"{target.safe_url.rstrip('/')}/{dataset}"
        self.fs: Any = None
        self.root = ""

    # -- errors

    def mask(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def error(self, exc: BaseException) -> BucketError:
        """Turn a storage exception into a secret-free BucketError with a clear reason."""
        names = {c.__name__ for c in type(exc).__mro__}
        detail = self.mask(str(exc) or type(exc).__name__)
        endpoint = self.target.endpoint()
        env = self.target.env_names()
        if names & _UNREACHABLE_ERRORS or isinstance(exc, (ConnectionError, TimeoutError)):
            hint = " / ".join(env.get("endpoint_url", ())) or "the URL"
            msg = (
                f"storage endpoint unreachable ({endpoint}) while {self.step} for {self.url}: "
                f"{detail}. Check that the server is running and that {hint} points at it."
            )
        elif isinstance(exc, PermissionError):
            creds = " / ".join(n for o in ("key", "secret", "token") for n in env.get(o, ()))
            msg = (
                f"authentication failed (access denied) while {self.step} for {self.url}: "
                f"{detail}. Check the credentials in {creds or 'the storage options'}."
            )
        elif isinstance(exc, FileNotFoundError) and "bucket" in str(exc).lower():
            bucket = self.root.split("/", 1)[0]
            msg = f"bucket {bucket!r} does not exist at {endpoint} (target {self.url}); create it first"
        else:
            msg = f"{self.step} failed for {self.url}: {type(exc).__name__}: {detail}"
        logger.warning("bucket publish failed: %s", msg)
        return BucketError(msg)

    @contextmanager
    def doing(self, step: str) -> Iterator[None]:
        self.step = step
        try:
            yield
        except BucketError:
            raise
        except Exception as exc:
            raise self.error(exc) from None

    def progress(self, event: str, key: str) -> None:
        if self.on_progress is not None:
            self.on_progress(event, key)

    # -- filesystem

    def connect(self) -> None:
        from fsspec.core import url_to_fs

        scheme = self.target.scheme
        options: dict[str, Any] = {"skip_instance_cache": True}
        if scheme in _S3_SCHEMES:
            client = {k: v for k, v in self.options.items() if k in _CLIENT_KWARGS}
            options.update({k: v for k, v in self.options.items() if k not in _CLIENT_KWARGS})
            options["client_kwargs"] = client
            options["config_kwargs"] = {
                "connect_timeout": self.target.timeout_s,
                "read_timeout": self.target.timeout_s,
                "retries": {"max_attempts": max(1, self.target.retries), "mode": "standard"},
            }
        else:
            options.update(self.options)
        if scheme in {"file", "local"}:
            options["auto_mkdir"] = True
        with self.doing("connecting"):
            self.fs, root = url_to_fs(self.target.url, **options)
            if scheme in _S3_SCHEMES:
                self._tune_s3()
        if scheme in _S3_SCHEMES and not root.strip("/"):
            raise BucketError(f"target {self.target.safe_url} names no bucket")
        self.root = f"{root.rstrip('/')}/{self.dataset}"

    def _tune_s3(self) -> None:
        """Bound every S3 wait by the timeout.

        botocore adds ``Expect: 100-continue`` to S3 uploads and aiohttp waits for the
        interim response with no timeout at all, so a stalled server would hang an
        upload forever; without the header ``read_timeout`` covers the whole exchange.
        """
        from botocore.handlers import add_expect_header

        self.fs.retries = max(1, self.target.retries)
        self.fs.connect()
        self.fs.s3.meta.events.unregister("before-call.s3", add_expect_header)

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def list_keys(self) -> dict[str, int]:
        """Every key under the dataset folder with its size (one paginated listing)."""
        self.fs.invalidate_cache()
        found = self.fs.find(self.root, detail=True)
        prefix = self.root + "/"
        return {
            name[len(prefix) :]: int(info.get("size") or 0)
            for name, info in found.items()
            if name.startswith(prefix) and info.get("type", "file") == "file"
        }

    def write(self, item: _Item) -> None:
        """Write one key so that readers never see it half-written (see module doc)."""
        dest = self.path(item.key)
        if self.target.scheme in _SINGLE_PUT_SCHEMES:
            self._put(item, dest)
            return
        parent, name = dest.rsplit("/", 1)
        tmp = f"{parent}/.{name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}"
        try:
            self._put(item, tmp)
            if self.target.scheme in {"file", "local"}:
                os.replace(self.fs._strip_protocol(tmp), self.fs._strip_protocol(dest))
            else:
                self.fs.mv(tmp, dest)
        except BaseException:
            with suppress(Exception):  # the temp file may not exist; the original error matters
                self.fs.rm_file(tmp)
            raise

    def _put(self, item: _Item, dest: str) -> None:
        if item.payload is not None:
            self.fs.pipe_file(dest, item.payload)
        else:
            self.fs.put_file(str(item.source), dest)

    # -- the run

    def publish(self, inputs: _Inputs, copy_files: bool) -> BucketResult:
        self.connect()
        with self.doing("listing the dataset folder"):
            existing = self.list_keys()
        with self.doing("reading the previous manifest and schema"):
            owned = self._read_manifest(existing)
            schema = self._merged_schema(existing)

        lightly_items = [
            _Item(key=k, size=len(b), payload=b)
            for k, b in [(k, _json_bytes(d)) for k, d in inputs.metadata_docs.items()]
        ]
        schema_bytes = _json_bytes(schema)
        lightly_items.append(_Item(key=SCHEMA_KEY, size=len(schema_bytes), payload=schema_bytes))
        csv_item = _Item(key=csv_key(self.dataset), size=len(inputs.csv_bytes), payload=inputs.csv_bytes)
        lightly_items.append(csv_item)  # last: the CSV appears only once all it names exists

        dataset_files = {item.key for item in inputs.data_items}
        items = (inputs.data_items if copy_files else []) + lightly_items
        to_write, skipped, kept = self._plan(items, existing, owned)
        if csv_item.key in skipped:  # readers rely on this key: trust its bytes, not its record
            with self.doing(f"comparing {csv_item.key} with the local CSV"):
                if self.fs.cat_file(self.path(csv_item.key)) != csv_item.payload:
                    skipped.remove(csv_item.key)
                    kept.pop(csv_item.key, None)
                    to_write.append(csv_item)
        if not copy_files:  # still ours, still in the dataset: neither rewrite nor delete
            kept.update({k: v for k, v in owned.items() if k in dataset_files})
        desired = {item.key for item in items} | set(kept)
        stale = sorted(k for k in owned if k not in desired and k in existing and k != MANIFEST_KEY)
        stale += sorted(k for k in existing if _is_our_tmp(k))

        final = dict(kept)
        final.update({item.key: item.record for item in to_write})
        if to_write or stale:
            self._upload(to_write, owned)
        for key in skipped:
            self.progress("skipped", key)
        if stale:
            with self.doing(f"removing {len(stale)} key(s) no longer in the dataset"):
                self.fs.rm([self.path(k) for k in stale])
                self._prune_empty_dirs(stale)
            for key in stale:
                self.progress("removed", key)
        if to_write or stale or final != owned:
            with self.doing("writing the manifest"):
                self._write_manifest(final)

        with self.doing("reading the upload back"):
            result = self._read_back(inputs, to_write, dataset_files, skipped, stale)
        logger.info(
            "published %s: %d written, %d skipped, %d removed, %d embeddings",
            self.url,
            len(result.files_written),
            len(result.files_skipped),
            len(result.files_removed),
            result.embeddings,
        )
        return result

    def _upload(self, to_write: list[_Item], owned: Mapping[str, Any]) -> None:
        """Write the keys, with the manifest always covering every key that may exist.

        Keys about to be written are first recorded as pending (owned, never trusted
        as up to date); finished ones get their real record at checkpoints, so a rerun
        after an interruption skips what was already uploaded.
        """
        state = dict(owned)
        state.update({item.key: {"pending": True} for item in to_write})
        with self.doing("recording the upload plan in the manifest"):
            self._write_manifest(state)
        last_checkpoint = time.monotonic()
        for item in to_write:
            with self.doing(f"writing {item.key}"):
                self.write(item)
                state[item.key] = item.record
                if time.monotonic() - last_checkpoint >= self.target.checkpoint_s:
                    self.step = "recording finished uploads in the manifest"
                    self._write_manifest(state)
                    last_checkpoint = time.monotonic()
            self.progress("written", item.key)

    def _prune_empty_dirs(self, removed: list[str]) -> None:
        """Local targets keep folders after their files go; drop the ones left empty."""
        if self.target.scheme not in {"file", "local"}:
            return
        root = Path(self.fs._strip_protocol(self.root))
        for key in removed:
            folder = (root / key).parent
            while folder != root and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent

    def _plan(
        self, items: list[_Item], existing: Mapping[str, int], owned: Mapping[str, Any]
    ) -> tuple[list[_Item], list[str], dict[str, Any]]:
        """Split items into writes and skips; ``kept`` are skipped keys we still own."""
        to_write: list[_Item] = []
        skipped: list[str] = []
        kept: dict[str, Any] = {}
        for item in items:
            same_size = existing.get(item.key) == item.size
            if item.key in owned:
                unchanged = same_size and owned[item.key] == item.record
            else:  # someone else's key (or none): same size counts as already there
                unchanged = same_size and item.payload is None
            if unchanged:
                skipped.append(item.key)
                if item.key in owned:
                    kept[item.key] = owned[item.key]
            else:
                to_write.append(item)
        return to_write, skipped, kept

    def _read_manifest(self, existing: Mapping[str, int]) -> dict[str, Any]:
        if MANIFEST_KEY not in existing:
            return {}
        try:
            doc = json.loads(self.fs.cat_file(self.path(MANIFEST_KEY)))
            keys = doc["keys"] if doc.get("format") == MANIFEST_FORMAT else None
        except (ValueError, KeyError, TypeError, AttributeError):
            keys = None
        if not isinstance(keys, dict):
            logger.warning("%s/%s is unreadable; no earlier keys will be removed", self.url, MANIFEST_KEY)
            return {}
        return keys

    def _write_manifest(self, keys: Mapping[str, Any]) -> None:
        doc = {"format": MANIFEST_FORMAT, "dataset": self.dataset, "keys": dict(sorted(keys.items()))}
        payload = _json_bytes(doc)
        self.write(_Item(key=MANIFEST_KEY, size=len(payload), payload=payload))

    def _merged_schema(self, existing: Mapping[str, int]) -> list[dict[str, Any]]:
        """Our two entries, plus any entries others put in schema.json for other paths."""
        ours = [dict(e) for e in SCHEMA_ENTRIES]
        if SCHEMA_KEY not in existing:
            return ours
        try:
            current = json.loads(self.fs.cat_file(self.path(SCHEMA_KEY)))
        except ValueError:
            current = []
        paths = {e["path"] for e in ours}
        others = [
            e
            for e in (current if isinstance(current, list) else [])
            if isinstance(e, dict) and e.get("path") not in paths
        ]
        return ours + others

    def _read_back(
        self,
        inputs: _Inputs,
        written: list[_Item],
        dataset_files: set[str],
        skipped: list[str],
        stale: list[str],
    ) -> BucketResult:
        """Verify the bucket by reading it, and count from what was read."""
        listing = self.list_keys()
        key = csv_key(self.dataset)
        wanted = [item for item in written if item.payload is not None and item.key != key]
        contents = self.fs.cat([self.path(i.key) for i in wanted]) if wanted else {}
        for item in wanted:
            if contents.get(self.path(item.key)) != item.payload:
                raise BucketError(f"{self.url}/{item.key} reads back different from what was written")
        csv_back = self.fs.cat_file(self.path(key))
        if csv_back != inputs.csv_bytes:
            raise BucketError(f"{self.url}/{key} reads back different from the local CSV")
        dim, filenames = _parse_csv(csv_back)
        missing = [k for k in inputs.metadata_docs if k not in listing]
        if missing or SCHEMA_KEY not in listing:
            raise BucketError(f"{self.url}: metadata missing after upload, e.g. {(missing or [SCHEMA_KEY])[0]}")
        covered = sum(1 for f in filenames if metadata_key(inputs.sample_sources[f]) in listing)
        return BucketResult(
            url=self.target.safe_url,
            dataset_name=self.dataset,
            dataset_url=self.url,
            csv_key=key,
            files_written=tuple(item.key for item in written),
            files_skipped=tuple(skipped),
            files_removed=tuple(stale),
            samples=covered,
            embeddings=len(filenames),
            embedding_dim=dim,
            metadata_files=sum(1 for k in inputs.metadata_docs if k in listing),
            data_files=sum(1 for k in dataset_files if k in listing),
            target=self.target.describe(),
        )
