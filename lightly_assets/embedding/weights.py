"""Which weights embed a dataset, in the order below, and where they came from.

1. a checkpoint the user names; 2. the dataset's own trained `embedding_model.ckpt`; 3. Lightly's pretrained
model-zoo checkpoint for the architecture, the one `lightly-embed` uses by default, kept in torch's hub cache
(`$TORCH_HOME/hub/checkpoints/<basename of the URL>`) and downloaded once when the network allows; 4. a seeded
random initialisation, said loudly.

The download is ours rather than `torch.hub.load_state_dict_from_url`, which has no timeout: an offline machine
or a stalled mirror must cost seconds, not hang the run. A download that fails for any reason (unreachable,
slow, truncated, not a checkpoint) falls back to random weights with the reason; a file already in the cache that
cannot be used is an error naming it, never a silent random model.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from lightly_assets.atomic import atomic_output
from lightly_assets.errors import LightlyAssetsError, first_line

TRAINED_NAME = "embedding_model.ckpt"
DEFAULT_ZOO_KEY = "resnet-18/simclr/d32/w1.0"  # lightly-embed's default config: resnet-18, num_ftrs 32, width 1
STALL_TIMEOUT_S = 10.0  # longest wait for the server to answer or to send more bytes
TOTAL_TIMEOUT_S = 600.0  # a download still running after this is abandoned, however fast bytes trickle in
_CHUNK = 1 << 20
# lightly.models.zoo.ZOO's entry for lightly-embed's default network: importing the zoo (torchvision) for this
# string cost 1.4 s of start-up; a test checks it against lightly's ZOO. Other keys still ask lightly.
DEFAULT_ZOO_URL = "https://storage.googleapis.com/models_boris/whattolabel-resnet18-simclr-d32-w1.0-i-085d0693.pth"

Source = Literal["checkpoint", "trained", "pretrained", "random"]


class WeightsError(LightlyAssetsError):
    """A weights file that exists but cannot be used; the message names the file."""


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
    from lightly.models.zoo import ZOO

    if key not in ZOO:
        raise WeightsError(f"no pretrained weights in lightly's model zoo for {key!r}; known: {sorted(ZOO)}")
    return ZOO[key]


def hub_checkpoints_dir() -> Path:
    """torch's hub cache, as `lightly-embed` uses it (honours TORCH_HOME and XDG_CACHE_HOME).

    `torch.hub.get_dir()`'s rule, written out so that choosing the weights does not import torch; when torch is
    already imported, its answer (which `torch.hub.set_dir` may have changed) wins.
    """
    import sys

    if "torch.hub" in sys.modules:
        return Path(sys.modules["torch.hub"].get_dir()) / "checkpoints"
    xdg = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(xdg, "torch")))) / "hub" / "checkpoints"


def cached_path(url: str) -> Path:
    """Where torch's hub keeps the file of `url`: the URL's basename under the hub's checkpoints folder."""
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise WeightsError(f"pretrained URL {url!r} names no file")
    return hub_checkpoints_dir() / name


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class DownloadFailed(Exception):
    """The pretrained file could not be fetched; the caller falls back to random weights."""


def download(
    url: str, dest: Path, stall_timeout: float = STALL_TIMEOUT_S, total_timeout: float = TOTAL_TIMEOUT_S
) -> Path:
    """Fetch `url` into `dest` atomically; raises DownloadFailed (never hangs longer than the timeouts).

    A short body (fewer bytes than Content-Length) or a body that is not a PyTorch file is not kept.
    """
    deadline = time.monotonic() + total_timeout
    _resolve(url, stall_timeout)
    try:
        with urllib.request.urlopen(url, timeout=stall_timeout) as response:  # noqa: S310 - http(s) URL by config
            expected = response.headers.get("Content-Length")
            with atomic_output(dest) as out:
                got, head = 0, b""
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    head = head or chunk[:4]
                    got += len(chunk)
                    if time.monotonic() > deadline:
                        raise DownloadFailed(f"{url}: still downloading after {total_timeout:g} s, gave up")
                if expected is not None and got != int(expected):
                    raise DownloadFailed(f"{url}: truncated download ({got} of {expected} bytes)")
                if not _looks_like_torch_file(head):
                    raise DownloadFailed(f"{url}: the server sent {got} bytes that are not a PyTorch checkpoint")
    except DownloadFailed:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadFailed(f"{url}: {reason}") from None
    return dest


def _resolve(url: str, timeout: float) -> None:
    """Name resolution has no timeout in urllib (an offline resolver can block for tens of seconds): bound it."""
    parts = urllib.parse.urlparse(url)
    if not parts.hostname:
        raise DownloadFailed(f"{url}: not an http(s) URL")
    outcome: list[BaseException | None] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(parts.hostname, parts.port or 443)
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=lookup, name="pretrained-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if not outcome:
        raise DownloadFailed(f"{url}: could not resolve {parts.hostname} within {timeout:g} s")
    if outcome[0] is not None:
        raise DownloadFailed(f"{url}: {outcome[0]}")


def _looks_like_torch_file(head: bytes) -> bool:
    """torch.save writes a zip archive; the legacy format is a pickle (starts with the PROTO opcode)."""
    return head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")


def choose_weights(
    checkpoint: str | os.PathLike[str] | None = None,
    trained: str | os.PathLike[str] | None = None,
    pretrained: bool = True,
    url: str | None = None,
    zoo_key: str = DEFAULT_ZOO_KEY,
    stall_timeout: float = STALL_TIMEOUT_S,
    log=None,
) -> Weights:
    """Pick the weights in the module's order; downloads the pretrained file at most once (then the cache serves it).

    `url` overrides the zoo URL (the resource's `pretrained_url`, bound to LIGHTLY_ASSETS_PRETRAINED_URL).
    """
    if checkpoint:
        return _file_weights("checkpoint", Path(checkpoint))
    if trained and Path(trained).is_file():
        return _file_weights("trained", Path(trained))
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
    weights = _file_weights("pretrained", path)
    return Weights("pretrained", path, weights.sha256, zoo_key, url)


def _file_weights(source: Source, path: Path) -> Weights:
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint file not found")
    return Weights(source, path, sha256_of(path))


def zoo_arch(key: str):  # -> lightly_assets.embedding.model.LightlyArch
    """`resnet-18/simclr/d32/w1.0` -> the LightlyArch lightly-embed builds for that zoo entry."""
    from lightly_assets.embedding.model import LightlyArch

    name, _, ftrs, width = key.split("/")
    return LightlyArch(name=name, width=float(width.removeprefix("w")), num_ftrs=int(ftrs.removeprefix("d")))


def check_architecture(path: Path, key: str) -> None:
    """A cached pretrained file must hold exactly the backbone of `key`: anything else is an error naming it."""
    from lightly_assets.embedding.checkpoint import read_state_dict
    from lightly_assets.embedding.model import ModelError, build_lightly_model

    hint = "delete it to download the pretrained weights again"
    try:
        state = read_state_dict(path, "cached pretrained weights are", mmap=True)
    except ModelError as exc:
        raise WeightsError(f"{exc}; {hint}") from None
    got = {k.removeprefix("model."): tuple(v.shape) for k, v in state.items()}
    want = {k: tuple(v.shape) for k, v in build_lightly_model(zoo_arch(key)).state_dict().items()}
    want = {k: v for k, v in want.items() if k.startswith("backbone.")}
    wrong = sorted(k for k, v in want.items() if got.get(k) != v)
    if wrong:
        raise WeightsError(
            f"{path}: cached pretrained weights do not fit {key} ({len(wrong)} backbone tensors missing or "
            f"shaped differently, e.g. {wrong[:3]}); {hint}"
        )


def load_chosen(weights: Weights, **model_kwargs):  # -> lightly_assets.embedding.model.LoadedModel
    """Load the chosen weights with the project's one model loader (`embedding.model.load_model`).

    With engine `auto`/`openvino` on a CPU, a model converted before is served from the engine cache
    (`embedding.warm`): no torch import, no architecture check (it passed when the entry was written).
    """
    from lightly_assets.embedding.warm import warm_model

    cached = warm_model(weights.path, weights.sha256, **model_kwargs)
    if cached is not None:
        return cached
    from lightly_assets.embedding.model import load_model

    if weights.source == "pretrained" and weights.path is not None and weights.zoo_key:
        check_architecture(weights.path, weights.zoo_key)
    return load_model(str(weights.path) if weights.path else None, **model_kwargs)


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
            if torch_file:
                download(source, dest, stall_timeout=stall_timeout)
            else:
                _download_any(source, dest, stall_timeout)
        except DownloadFailed as exc:
            raise WeightsError(
                f"{model}: weights are not in the cache ({dest}) and could not be downloaded ({exc}); {NAMED_HINT}"
            ) from None
    return Weights("pretrained", dest, sha256_of(dest), model, source)


def _download_any(url: str, dest: Path, stall_timeout: float) -> None:
    """`download` without the PyTorch-file check (ONNX, safetensors)."""
    _resolve(url, stall_timeout)
    try:
        with urllib.request.urlopen(url, timeout=stall_timeout) as response, atomic_output(dest) as out:  # noqa: S310
            expected, got = response.headers.get("Content-Length"), 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                got += len(chunk)
            if expected is not None and got != int(expected):
                raise DownloadFailed(f"{url}: truncated download ({got} of {expected} bytes)")
    except DownloadFailed:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise DownloadFailed(f"{url}: {getattr(exc, 'reason', None) or exc}") from None


def hf_cache_dir() -> Path:
    """Hugging Face's hub cache (honours HF_HOME / HF_HUB_CACHE)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def fetch_hf(
    model: str, repo_id: str, filenames: tuple[str, ...], stall_timeout: float = STALL_TIMEOUT_S, log=None
) -> Weights:
    """The first of `filenames` in the Hugging Face repo, from HF's cache, else downloaded into it (HF writes it
    atomically); used offline when cached. Unreachable: one line naming the model and the cache folder."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    for name in filenames:
        cached = try_to_load_from_cache(repo_id, name)
        if isinstance(cached, str):
            return _hf_weights(model, repo_id, name, Path(cached))
    from huggingface_hub import constants

    endpoint = constants.ENDPOINT
    reasons = []
    try:
        _reachable(endpoint, stall_timeout)  # HF retries a refused connection for half a minute: ask once first
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


def _reachable(url: str, timeout: float) -> None:
    """Name resolution and a TCP connection to the server of `url`, each bounded by `timeout`."""
    _resolve(url, timeout)
    parts = urllib.parse.urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise DownloadFailed(f"{url}: {exc.strerror or exc}") from None


def _hf_weights(model: str, repo_id: str, name: str, path: Path) -> Weights:
    """HF's cache keeps large files as blobs named by their sha256: no need to hash them again."""
    blob = path.resolve().name
    sha = blob if len(blob) == 64 and all(c in "0123456789abcdef" for c in blob) else sha256_of(path)
    return Weights("pretrained", path, sha, model, f"hf://{repo_id}/{name}")
