"""One publish run against one target: connect, plan, upload, prune, read back."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from fsspec.core import url_to_fs

from lightly_assets.publish.bucket.inputs import (
    CURATION_FILES,
    Inputs,
    Item,
    csv_key,
    curation_key,
    is_our_tmp,
    json_bytes,
    metadata_key,
    parse_csv,
)
from lightly_assets.publish.bucket.target import (
    CLIENT_KWARGS,
    MANIFEST_FORMAT,
    MANIFEST_KEY,
    PUBLIC_OPTIONS,
    S3_SCHEMES,
    SCHEMA_ENTRIES,
    SCHEMA_KEY,
    SINGLE_PUT_SCHEMES,
    TMP_SUFFIX,
    UNREACHABLE_ERRORS,
    BucketError,
    BucketResult,
    BucketTarget,
    ProgressCallback,
)
from lightly_assets.publish.secrets import mask, userinfo

logger = logging.getLogger(__name__)


class PublishSession:
    """One publish run against one target: filesystem handle, current step, secrets."""

    def __init__(self, target: BucketTarget, dataset: str, on_progress: ProgressCallback | None):
        self.target = target
        self.dataset = dataset
        self.on_progress = on_progress
        self.step = "connecting"
        self.options = target.resolved_options()
        self.secrets = [v for k, v in self.options.items() if k not in PUBLIC_OPTIONS]
        for url in (target.url, self.options.get("endpoint_url", "")):
            self.secrets += userinfo(url)
        self.url = f"{target.safe_url.rstrip('/')}/{dataset}"
        self.fs: Any = None
        self.root = ""

    # -- errors

    def mask(self, text: str) -> str:
        return mask(text, self.secrets)

    def error(self, exc: BaseException) -> BucketError:
        """Turn a storage exception into a secret-free BucketError with a clear reason."""
        names = {c.__name__ for c in type(exc).__mro__}
        detail = self.mask(str(exc) or type(exc).__name__)
        endpoint = self.target.endpoint()
        env = self.target.env_names()
        if names & UNREACHABLE_ERRORS or isinstance(exc, (ConnectionError, TimeoutError)):
            hint = "the configured endpoint" if self.target.endpoint_url else " / ".join(env.get("endpoint_url", ()))
            hint = hint or "the URL"
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
        scheme = self.target.scheme
        options: dict[str, Any] = {"skip_instance_cache": True}
        if scheme in S3_SCHEMES:
            client = {k: v for k, v in self.options.items() if k in CLIENT_KWARGS}
            options.update({k: v for k, v in self.options.items() if k not in CLIENT_KWARGS})
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
            if scheme in S3_SCHEMES:
                self._tune_s3()
        if scheme in S3_SCHEMES and not root.strip("/"):
            raise BucketError(f"target {self.target.safe_url} names no bucket")
        self.root = f"{root.rstrip('/')}/{self.dataset}"

    def _tune_s3(self) -> None:
        """Bound every S3 wait by the timeout: botocore adds ``Expect: 100-continue`` to S3 uploads and aiohttp
        waits for the interim response with no timeout at all, so a stalled server would hang an upload forever;
        without the header ``read_timeout`` covers the whole exchange."""
        # botocore (~100 modules) only for S3: runs to other targets start without it
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

    def write(self, item: Item) -> None:
        """Write one key so that readers never see it half-written (see module doc)."""
        dest = self.path(item.key)
        if self.target.scheme in SINGLE_PUT_SCHEMES:
            self._put(item, dest)
            return
        parent, name = dest.rsplit("/", 1)
        tmp = f"{parent}/.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}"  # short: `name` may already be 255 bytes long
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

    def _put(self, item: Item, dest: str) -> None:
        if item.payload is not None:
            self.fs.pipe_file(dest, item.payload)
        else:
            self.fs.put_file(str(item.source), dest)

    # -- the run

    def publish(self, inputs: Inputs, copy_files: bool) -> BucketResult:
        self.connect()
        with self.doing("listing the dataset folder"):
            existing = self.list_keys()
        with self.doing("reading the previous manifest and schema"):
            owned = self._read_manifest(existing)
            schema = self._merged_schema(existing)

        lightly_items = [
            Item(key=k, size=len(b), payload=b)
            for k, b in [(k, json_bytes(d)) for k, d in inputs.metadata_docs.items()]
        ]
        schema_bytes = json_bytes(schema)
        lightly_items.append(Item(key=SCHEMA_KEY, size=len(schema_bytes), payload=schema_bytes))
        csv_item = Item(key=csv_key(self.dataset), size=len(inputs.csv_bytes), payload=inputs.csv_bytes)
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
        curation = {curation_key(name) for name in CURATION_FILES}  # written by publish_files, kept here
        kept.update({k: v for k, v in owned.items() if k in curation and k in existing})
        desired = {item.key for item in items} | set(kept)
        stale = sorted(k for k in owned if k not in desired and k in existing and k != MANIFEST_KEY)
        stale += sorted(k for k in existing if is_our_tmp(k))

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

    def publish_files(self, files: Mapping[str, bytes]) -> dict[str, str]:
        """Write the curation's files under `.lightly/` (after the dataset: they describe its samples) and own them in
        the manifest; name -> written/unchanged."""
        self.connect()
        with self.doing("listing the dataset folder and reading the manifest"):
            if csv_key(self.dataset) not in (existing := self.list_keys()):
                raise BucketError(f"{self.url} holds no published dataset: materialize uploaded_dataset first")
            owned = self._read_manifest(existing)
        items = [Item(key=curation_key(name), size=len(data), payload=data) for name, data in files.items()]
        to_write, _, _ = self._plan(items, existing, owned)
        if to_write:
            final = {**owned, **{item.key: item.record for item in items}}
            self._upload(to_write, owned)
            with self.doing("writing the manifest"):
                self._write_manifest(final)
            with self.doing("reading the files back"):
                if any(self.fs.cat_file(self.path(item.key)) != item.payload for item in to_write):
                    raise BucketError(f"{self.url}: a curation file reads back different from what was written")
        written = {item.key for item in to_write}
        return {name: "written" if curation_key(name) in written else "unchanged" for name in files}

    def _upload(self, to_write: list[Item], owned: Mapping[str, Any]) -> None:
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
        self, items: list[Item], existing: Mapping[str, int], owned: Mapping[str, Any]
    ) -> tuple[list[Item], list[str], dict[str, Any]]:
        """Split items into writes and skips; ``kept`` are skipped keys we still own."""
        to_write: list[Item] = []
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
        payload = json_bytes(doc)
        self.write(Item(key=MANIFEST_KEY, size=len(payload), payload=payload))

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
        inputs: Inputs,
        written: list[Item],
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
        dim, filenames = parse_csv(csv_back, f"{self.url}/{key}")
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
