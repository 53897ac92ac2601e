"""Shared test helpers: free loopback ports and image-folder fixtures; test media come from `media.py`."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

os.environ.setdefault("LIGHTLY_STUDIO_ANALYTICS_ENABLED", "false")
# Nothing downloads at test time: the pretrained weights come from an empty hub cache and a refused local URL
# (port 9 is closed here), so every run falls back to random weights in milliseconds unless a test serves a file.
os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="lightly-assets-torch-home-")
# Converted OpenVINO models: one cache for the session, never the user's. Subprocesses (the CLI, Dagster) get it
# through LIGHTLY_ASSETS_ENGINE_CACHE, which definitions.py binds to `embedding_model.engine_cache_dir`; this process
# through the `engine_cache` fixture below.
ENGINE_CACHE = Path(tempfile.mkdtemp(prefix="lightly-assets-engine-cache-"))
os.environ["LIGHTLY_ASSETS_ENGINE_CACHE"] = str(ENGINE_CACHE)
OFFLINE_PRETRAINED_URL = "http://127.0.0.1:9/offline/no-pretrained-weights-in-tests.pth"
os.environ["LIGHTLY_ASSETS_PRETRAINED_URL"] = OFFLINE_PRETRAINED_URL  # bound to the resource by definitions.py

from lightly_assets_tests.media import make_image, make_video  # noqa: E402,F401 - the builders' one home

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_DATA = REPO / "data"


@pytest.fixture(autouse=True, scope="session")
def engine_cache() -> Iterator[Path]:
    """The session's converted-model cache, as the default of every model made in this process."""
    from lightly_assets.embedding.engines import compiled_cache

    compiled_cache.DEFAULT_ROOT = ENGINE_CACHE
    yield ENGINE_CACHE
    compiled_cache.DEFAULT_ROOT = None


# Python code that makes this interpreter behave as on a machine whose /etc/hosts has no `::1 localhost`: binding
# "localhost" over IPv6 fails, everything else binds as usual. Run a command under it with
# `[sys.executable, "-c", NO_IPV6_LOCALHOST, MODULE, *ARGS]` (the module is run as `python -m MODULE ARGS`).
NO_IPV6_LOCALHOST = """
import errno, runpy, socket, sys
_bind = socket.socket.bind
def bind(self, address):
    if self.family == socket.AF_INET6 and address[0] == "localhost":
        raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address (no ::1 localhost in /etc/hosts)")
    return _bind(self, address)
socket.socket.bind = bind
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (servers in tests bind loopback only)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def image_tree(tmp_path: Path):
    """Build a folder of images from a list of relative paths."""

    def build(names: list[str], root: str = "ds") -> Path:
        base = tmp_path / root
        for i, name in enumerate(names):
            make_image(base / name, seed=i)
        return base

    return build


@pytest.fixture(scope="session")
def real_media() -> dict[str, Path]:
    """The real-media corpus from its cache (scripts/fetch_real_media.sh fills it); skips with the reason if absent."""
    from lightly_assets_tests.real_media import Unavailable, corpus

    try:
        return corpus()
    except Unavailable as exc:
        pytest.skip(str(exc))


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        """No request lines in the test output."""


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static file server on 127.0.0.1 over a folder the test fills: (base URL, folder)."""
    root = tmp_path / "served"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
