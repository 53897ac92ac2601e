"""The one download of weights files (bounded by timeouts, written atomically) and the one sha256 of a file.

Ours rather than `torch.hub.load_state_dict_from_url`, which has no timeout: an offline machine or a stalled mirror
must cost seconds, not hang the run. Also where the libraries keep their weights (torch's hub, Hugging Face's hub),
so that a file we fetch is the one the library itself finds.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from lightly_assets.atomic import atomic_output
from lightly_assets.embedding.errors import WeightsError

STALL_TIMEOUT_S = 10.0  # longest wait for the server to answer or to send more bytes
TOTAL_TIMEOUT_S = 600.0  # a download still running after this is abandoned, however fast bytes trickle in
_CHUNK = 1 << 20


class DownloadFailed(Exception):
    """The file could not be fetched; the caller decides (random weights for lightly's zoo, an error otherwise)."""


def sha256_of(path: Path | str) -> str:
    """The hex sha256 of a file, read in chunks (weights files are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def hub_checkpoints_dir() -> Path:
    """torch's hub cache, as `lightly-embed` uses it (honours TORCH_HOME and XDG_CACHE_HOME).

    `torch.hub.get_dir()`'s rule, written out so that choosing the weights does not import torch; when torch is
    already imported, its answer (which `torch.hub.set_dir` may have changed) wins.
    """
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


def hf_cache_dir() -> Path:
    """Hugging Face's hub cache (honours HF_HOME / HF_HUB_CACHE)."""
    from huggingface_hub import constants  # optional: only the timm and open_clip families use the HF hub

    return Path(constants.HF_HUB_CACHE)


def download(
    url: str,
    dest: Path,
    stall_timeout: float = STALL_TIMEOUT_S,
    total_timeout: float = TOTAL_TIMEOUT_S,
    torch_file: bool = True,
) -> Path:
    """Fetch `url` into `dest` atomically; raises DownloadFailed (never hangs longer than the timeouts).

    A short body (fewer bytes than Content-Length) is not kept, nor (`torch_file`) a body that is not a PyTorch
    file; ONNX and safetensors files pass `torch_file=False`.
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
                if torch_file and not _looks_like_torch_file(head):
                    raise DownloadFailed(f"{url}: the server sent {got} bytes that are not a PyTorch checkpoint")
    except DownloadFailed:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadFailed(f"{url}: {reason}") from None
    return dest


def reachable(url: str, timeout: float) -> None:
    """Name resolution and a TCP connection to the server of `url`, each bounded by `timeout`."""
    _resolve(url, timeout)
    parts = urllib.parse.urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise DownloadFailed(f"{url}: {exc.strerror or exc}") from None


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
