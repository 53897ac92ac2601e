"""Where a bucket datasource goes (URL and credential env names) and what a publish reports."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightly_assets.errors import LightlyAssetsError
from lightly_assets.publish.secrets import mask_url

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

#: storage option -> AWS's own environment variables, first one set wins (S3 targets). The project's settings
#: (an endpoint, a region) come in as `BucketTarget` fields, bound in `lightly_assets.definitions`.
S3_STORAGE_OPTIONS_ENV: Mapping[str, tuple[str, ...]] = {
    "key": ("AWS_ACCESS_KEY_ID",),
    "secret": ("AWS_SECRET_ACCESS_KEY",),
    "token": ("AWS_SESSION_TOKEN",),
    "endpoint_url": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "region_name": ("AWS_REGION", "AWS_DEFAULT_REGION"),
}
S3_SCHEMES = {"s3", "s3a"}
CLIENT_KWARGS = {"endpoint_url", "region_name"}  # go into s3fs client_kwargs
PUBLIC_OPTIONS = CLIENT_KWARGS  # every other option value is treated as a secret
SINGLE_PUT_SCHEMES = S3_SCHEMES | {"gs", "gcs", "az", "abfs", "abfss", "memory"}
UNREACHABLE_ERRORS = {
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


class BucketError(LightlyAssetsError):
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
    endpoint_url: str | None = None  # set: used before the environment's (an S3-compatible server)
    region_name: str | None = None

    @property
    def scheme(self) -> str:
        """The URL scheme; ``file`` for plain paths."""
        return self.url.split("://", 1)[0].lower() if "://" in self.url else "file"

    @property
    def safe_url(self) -> str:
        """The URL with any user-info and query string masked."""
        return mask_url(self.url)

    def env_names(self) -> dict[str, tuple[str, ...]]:
        """Effective storage option -> env var names."""
        if self.storage_options_env is None:
            mapping = S3_STORAGE_OPTIONS_ENV if self.scheme in S3_SCHEMES else {}
        else:
            mapping = self.storage_options_env
        return {opt: (names,) if isinstance(names, str) else tuple(names) for opt, names in mapping.items()}

    def resolved_options(self) -> dict[str, str]:
        """Option values read from the environment now (may contain secrets: never log)."""
        resolved = {k: v for k, v in (("endpoint_url", self.endpoint_url), ("region_name", self.region_name)) if v}
        for option, names in self.env_names().items():
            if option in resolved:
                continue
            value = next((os.environ[n] for n in names if os.environ.get(n)), None)
            if value is not None:
                resolved[option] = value
        return resolved

    def endpoint(self) -> str:
        """Secret-free description of the endpoint that will be contacted."""
        endpoint = self.resolved_options().get("endpoint_url")
        if endpoint:
            return mask_url(endpoint)
        return "the default AWS endpoint" if self.scheme in S3_SCHEMES else self.scheme

    def describe(self) -> dict[str, str]:
        """Secret-free summary for logs and asset metadata."""
        names = self.env_names()
        resolved = self.resolved_options()
        creds = [n for opt, ns in names.items() if opt not in PUBLIC_OPTIONS for n in ns]
        used = [opt for opt in resolved if opt not in PUBLIC_OPTIONS]
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
