"""Converted OpenVINO models on disk, so that a conversion (4-13 s for the default network) happens once.

One folder per key (weights identity, preprocessing, input shape, precision, engine and OpenVINO versions) holding
`model.xml`, `model.bin` and `meta.json` (sha256 of both files, plus whatever the caller needs to skip building the
torch module next time). Entries are written into a temporary folder and renamed into place; an entry whose files
do not match their recorded sha256 is rebuilt, never trusted. Files that matched are recorded (`verified.json`: each
file's size, times and inode, which any write changes) so that later runs skip hashing 45 MB of weights (0.04 s of
a warm start). The folder is the resource's `engine_cache_dir`
(`LIGHTLY_ASSETS_ENGINE_CACHE`, bound in `definitions.py`), else `$XDG_CACHE_HOME/lightly-assets/openvino`
(`~/.cache/...`): per user rather than per outputs folder, since an entry depends only on the model and its
settings, so every project and dataset shares one conversion.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightly_assets.atomic import write_bytes_atomic
from lightly_assets.embedding.download import sha256_of
from lightly_assets.embedding.engines.openvino_import import import_openvino
from lightly_assets.embedding.preprocessing import Preprocessing
from lightly_assets.embedding.weights import Weights

if TYPE_CHECKING:
    import openvino as ov

log = logging.getLogger(__name__)

_CACHE_FORMAT = "lightly-assets-openvino/1"
# Bump when the way a weights file becomes a network changes (key handling, folded batch norms, ...).
LOADER_VERSION = "lightly-assets-loader/1"
DEFAULT_NETWORK = "lightly resnet-18 width 1 num_ftrs 32"  # what the lightly family's random initialisation seeds
#: Where converted models go when no folder is given; None: the per-user default. Tests point it at a temporary one.
DEFAULT_ROOT: Path | None = None


def default_cache_dir() -> Path:
    """`DEFAULT_ROOT`, else `$XDG_CACHE_HOME/lightly-assets/openvino` (`~/.cache/...`, the XDG rule)."""
    if DEFAULT_ROOT is not None:
        return DEFAULT_ROOT
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lightly-assets" / "openvino"


def openvino_version() -> str:
    return version("openvino")


def lightly_identity(weights: Weights, seed: int) -> str:
    """Who a lightly-family network is, without building it: the weights file's bytes, or the random init's seed.

    Known before torch is imported, so a warm run finds its converted graph without building the network.
    """
    if weights.sha256 and not weights.random:
        return f"{LOADER_VERSION}|weights sha256 {weights.sha256}"
    return f"{LOADER_VERSION}|random {DEFAULT_NETWORK} seed {seed}"


def cache_key(identity: str, pre: Preprocessing, precision: str) -> str:
    """Everything that changes the converted graph: weights, preprocessing, input shape, precision, versions."""
    text = f"{_CACHE_FORMAT}|{identity}|{pre.describe()}|{precision}|openvino {openvino_version()}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ModelCache:
    """Converted models on disk, one folder per key; only entries whose files match their sha256 are used."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()
        # entries this object verified, with their files' (size, mtime): hashed once per run, again when changed
        self._intact: dict[str, tuple[tuple[tuple[int, ...], ...], dict[str, Any]]] = {}

    def entry(self, key: str) -> Path:
        return self.root / key

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The entry's meta (with `xml`), or None when missing or corrupt (a corrupt entry is removed)."""
        folder = self.entry(key)
        meta_file = folder / "meta.json"
        if not meta_file.is_file():
            return None
        stamp = _stamp(folder)
        if key in self._intact and self._intact[key][0] == stamp:
            return self._intact[key][1]
        verified = False
        try:
            meta = json.loads(meta_file.read_text())
            files = meta["files"]
            verified = _verified(folder) == stamp  # hashed by an earlier run, not changed since
            intact = meta.get("key") == key and (verified or all(sha256_of(folder / n) == h for n, h in files.items()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            intact = False
        if not intact:
            log.warning("%s: converted model is corrupt or incomplete; rebuilding it", folder)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        if not verified:
            _record_verified(folder, stamp)
        found = {**meta, "xml": str(folder / "model.xml")}
        self._intact[key] = (stamp, found)
        return found

    def store(self, key: str, model: ov.Model, meta: dict[str, Any]) -> dict[str, Any]:
        """Write model.xml/.bin/meta.json into a temporary folder, then rename it into place."""
        ov = import_openvino()  # the cache is asked first; OpenVINO loads only to write or run a graph

        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=self.root))
        try:
            ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)  # keep the weights as trained
            files = {n: sha256_of(tmp / n) for n in ("model.xml", "model.bin")}
            full = {**meta, "key": key, "files": files, "openvino": openvino_version(), "written": time.time()}
            (tmp / "meta.json").write_text(json.dumps(full, indent=1, sort_keys=True))
            os.chmod(tmp, 0o755)
            target = self.entry(key)
            try:
                os.rename(tmp, target)
            except OSError:  # another process stored the same key first: use its entry when intact
                if self.lookup(key) is None:
                    shutil.rmtree(target, ignore_errors=True)
                    os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return {**full, "xml": str(self.entry(key) / "model.xml")}


_VERIFIED = "verified.json"


def _stamp(folder: Path) -> tuple[tuple[int, ...], ...]:
    """Size, times and inode of an entry's files: what a truncated, rewritten or replaced file changes (a write
    always sets the ctime, which no tool sets back)."""
    stamps = []
    for name in ("meta.json", "model.xml", "model.bin"):
        try:
            st = (folder / name).stat()
            stamps.append((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev))
        except OSError:
            stamps.append((-1,))
    return tuple(stamps)


def _verified(folder: Path) -> tuple[tuple[int, ...], ...] | None:
    """The stamp recorded when the entry's files last matched their sha256, or None."""
    try:
        return tuple(tuple(s) for s in json.loads((folder / _VERIFIED).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _record_verified(folder: Path, stamp: tuple[tuple[int, ...], ...]) -> None:
    """Remember that these files matched; an entry that cannot be written to is hashed on each run instead."""
    with contextlib.suppress(OSError):
        write_bytes_atomic(folder / _VERIFIED, json.dumps(stamp).encode())
