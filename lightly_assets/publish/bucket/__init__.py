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

from lightly_assets.publish.bucket.inputs import csv_key, metadata_key
from lightly_assets.publish.bucket.publish import publish_curation_files, publish_to_bucket
from lightly_assets.publish.bucket.target import (
    MANIFEST_KEY,
    SCHEMA_KEY,
    BucketError,
    BucketResult,
    BucketTarget,
)

__all__ = [
    "MANIFEST_KEY",
    "SCHEMA_KEY",
    "BucketError",
    "BucketResult",
    "BucketTarget",
    "csv_key",
    "metadata_key",
    "publish_curation_files",
    "publish_to_bucket",
]
