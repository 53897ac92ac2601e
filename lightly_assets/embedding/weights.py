"""Where weights come from, and the one record of where they came from (`Weights`, the provenance in metadata).

The lightly family's weights, in this order (`choose_weights`):

1. a checkpoint the user names; 2. the dataset's own trained `embedding_model.ckpt`; 3. Lightly's pretrained
model-zoo checkpoint for the architecture, the one `lightly-embed` uses by default, kept in torch's hub cache
(`$TORCH_HOME/hub/checkpoints/<basename of the URL>`) and downloaded once when the network allows; 4. a seeded
random initialisation, said loudly.

A download of the zoo file that fails for any reason (unreachable, slow, truncated, not a checkpoint) falls back to
random weights with the reason; a file already in the cache that cannot be used is an error naming it, never a
silent random model. A named model's weights come from its library's cache (`fetch_named`, `fetch_hf`),
downloaded once, and never fall back to random weights. Every download is `download.download`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lightly_assets.embedding.download import (
    STALL_TIMEOUT_S,
    DownloadFailed,
    cached_path,
    download,
    hf_cache_dir,
    reachable,
    sha256_of,
)
from lightly_assets.embedding.errors import WeightsError
from lightly_assets.errors import first_line

TRAINED_NAME = "embedding_model.ckpt"
DEFAULT_ZOO_KEY = "resnet-18/simclr/d32/w1.0"  # lightly-embed's default config: resnet-18, num_ftrs 32, width 1
# lightly.models.zoo.ZOO's entry for lightly-embed's default network: importing the zoo (torchvision) for this
# string cost 1.4 s of start-up; a test checks it against lightly's ZOO. Other keys still ask lightly.
DEFAULT_ZOO_URL = "https://storage.googleapis.com/models_boris/whattolabel-resnet18-simclr-d32-w1.0-i-085d0693.pth"

Source = Literal["checkpoint", "trained", "pretrained", "random"]


@dataclass(frozen=True)
class Weights:
    """The chosen weights: `path` is None only for the random initialisation; `note` says why, when it matters."""

    source: Source
    path: Path | None = None
    sha256: str | None = None
    zoo_key: str | None = None
    url: str | None = None
    note: str = ""

    @property
    def random(self) -> bool:
        return self.source == "random"

    def describe(self) -> str:
        """One line for logs and the run summary."""
        if self.random:
            return f"random (seeded initialisation){': ' + self.note if self.note else ''}"
        where = f"{self.zoo_key} from {self.url}, " if self.source == "pretrained" else ""
        return f"{self.source} ({where}{self.path}, sha256 {(self.sha256 or '')[:16]})"

    def metadata(self) -> dict[str, str]:
        """Every field as text, so the UI shows the same provenance whatever the route."""
        return {
            "weights": self.source,
            "weights_file": str(self.path) if self.path else "none",
            "weights_sha256": self.sha256 or "none",
            "weights_zoo_key": self.zoo_key or "none",
            "weights_url": self.url or "none",
            "weights_note": self.note or "none",
        }


def zoo_url(key: str = DEFAULT_ZOO_KEY) -> str:
    """The URL lightly's own model zoo lists for `key` (lightly.models.zoo.ZOO)."""
    if key == DEFAULT_ZOO_KEY:
        return DEFAULT_ZOO_URL
    from lightly.models.zoo import ZOO  # imports torchvision (1.4 s): only for a zoo key other than the default

    if key not in ZOO:
        raise WeightsError(f"no pretrained weights in lightly's model zoo for {key!r}; known: {sorted(ZOO)}")
    return ZOO[key]


def choose_weights(
    checkpoint: str | os.PathLike[str] | None = None,
    trained: str | os.PathLike[str] | None = None,
    pretrained: bool = True,
    url: str | None = None,
    zoo_key: str = DEFAULT_ZOO_KEY,
    stall_timeout: float = STALL_TIMEOUT_S,
    log: Callable[[str], None] | None = None,
) -> Weights:
    """Pick the weights in the module's order; downloads the pretrained file at most once (then the cache serves it).

    `url` overrides the zoo URL (the resource's `pretrained_url`, bound to LIGHTLY_ASSETS_PRETRAINED_URL).
    """
    if checkpoint:
        return file_weights("checkpoint", Path(checkpoint))
    if trained and Path(trained).is_file():
        return file_weights("trained", Path(trained))
    if not pretrained:
        return Weights("random", note="pretrained weights switched off")
    url = url or zoo_url(zoo_key)
    path = cached_path(url)
    if not path.exists():
        if log:
            log(f"downloading pretrained weights {zoo_key} from {url} into {path}")
        try:
            download(url, path, stall_timeout=stall_timeout)
        except DownloadFailed as exc:
            return Weights("random", zoo_key=zoo_key, url=url, note=f"pretrained download failed: {exc}")
    elif not path.is_file():
        raise WeightsError(f"{path}: cached pretrained weights are not a file")
    weights = file_weights("pretrained", path)
    return Weights("pretrained", path, weights.sha256, zoo_key, url)


def file_weights(source: Source, path: Path) -> Weights:
    """A weights file the user or the dataset provides, with its sha256; a missing file is an error naming it."""
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint file not found")
    return Weights(source, path, sha256_of(path))


# ---------------------------------------------------------------------------------------------------------
# Named models (torchvision:, timm:, open_clip:, mobileclip:): their weights, in the library's own cache.

NAMED_HINT = "a named model never falls back to random weights"


def fetch_named(
    model: str,
    url: str,
    dest: Path,
    mirror: str | None = None,
    stall_timeout: float = STALL_TIMEOUT_S,
    log=None,
    torch_file: bool = True,
) -> Weights:
    """The weights file of a named model at `dest` (the library's cache), downloaded once and atomically.

    `mirror` replaces `url` as the download address (the resource's `pretrained_url`); the file keeps the cache
    name the library uses, so the library itself finds it too. Unreachable: one line naming the model and `dest`.
    """
    if dest.exists() and not dest.is_file():
        raise WeightsError(f"{model}: {dest} is not a weights file")
    source = mirror or url
    if not dest.exists():
        if log:
            log(f"{model}: downloading weights from {source} into {dest}")
        try:
            download(source, dest, stall_timeout=stall_timeout, torch_file=torch_file)
        except DownloadFailed as exc:
            raise WeightsError(
                f"{model}: weights are not in the cache ({dest}) and could not be downloaded ({exc}); {NAMED_HINT}"
            ) from None
    return Weights("pretrained", dest, sha256_of(dest), model, source)


def fetch_hf(
    model: str,
    repo_id: str,
    filenames: tuple[str, ...],
    stall_timeout: float = STALL_TIMEOUT_S,
    log: Callable[[str], None] | None = None,
) -> Weights:
    """The first of `filenames` in the Hugging Face repo, from HF's cache, else downloaded into it (HF writes it
    atomically); used offline when cached. Unreachable: one line naming the model and the cache folder."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache  # only timm and open_clip use it

    for name in filenames:
        cached = try_to_load_from_cache(repo_id, name)
        if isinstance(cached, str):
            return _hf_weights(model, repo_id, name, Path(cached))
    endpoint = constants.ENDPOINT
    reasons = []
    try:
        reachable(endpoint, stall_timeout)  # HF retries a refused connection for half a minute: ask once first
    except DownloadFailed as exc:
        reasons.append(str(exc))
    else:
        for name in filenames:
            if log:
                log(f"{model}: downloading {repo_id}/{name} into {hf_cache_dir()}")
            try:
                path = hf_hub_download(repo_id, name, etag_timeout=stall_timeout)
            except Exception as exc:  # noqa: BLE001 - offline, missing file, HTTP error: say which, try the next
                reasons.append(f"{name}: {first_line(exc)}")
                continue
            return _hf_weights(model, repo_id, name, Path(path))
    raise WeightsError(
        f"{model}: weights of Hugging Face repo {repo_id} are not in the cache ({hf_cache_dir()}) and could not be "
        f"downloaded ({'; '.join(reasons)}); {NAMED_HINT}"
    )


def _hf_weights(model: str, repo_id: str, name: str, path: Path) -> Weights:
    """HF's cache keeps large files as blobs named by their sha256: no need to hash them again."""
    blob = path.resolve().name
    sha = blob if len(blob) == 64 and all(c in "0123456789abcdef" for c in blob) else sha256_of(path)
    return Weights("pretrained", path, sha, model, f"hf://{repo_id}/{name}")
