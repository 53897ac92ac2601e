"""The session's environment (set in `pytest_configure`, not at import), how xdist shares the tests out, and the
fixtures; builders are in `media.py`, `tables.py` and `servers.py`."""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lightly_assets_tests import OFFLINE_PRETRAINED_URL
from lightly_assets_tests.media import make_image

_ENVIRONMENT = pytest.StashKey[pytest.MonkeyPatch]()
_FOLDERS = pytest.StashKey[dict[str, Path]]()


def pytest_configure(config: pytest.Config) -> None:
    """The environment of every test and of every process a test starts, set before any test module is imported.

    Nothing downloads: the pretrained weights come from an empty hub cache (TORCH_HOME) and a refused local URL, so
    every run falls back to random weights in milliseconds unless a test serves a file. Converted OpenVINO models
    go to a cache of this session (each xdist worker its own), never the user's: subprocesses (the CLI, Dagster)
    find it through LIGHTLY_ASSETS_ENGINE_CACHE, which definitions.py binds; this process through `engine_cache`.
    """
    folders = {name: Path(tempfile.mkdtemp(prefix=f"lightly-assets-{name}-")) for name in ("torch-home", "engines")}
    environment = pytest.MonkeyPatch()
    environment.setenv("TORCH_HOME", str(folders["torch-home"]))
    environment.setenv("LIGHTLY_ASSETS_ENGINE_CACHE", str(folders["engines"]))
    environment.setenv("LIGHTLY_ASSETS_PRETRAINED_URL", OFFLINE_PRETRAINED_URL)  # bound by definitions.py
    environment.setenv("LIGHTLY_STUDIO_ANALYTICS_ENABLED", os.environ.get("LIGHTLY_STUDIO_ANALYTICS_ENABLED", "false"))
    # Two xdist workers share the cores: torch's OpenMP threads would spin between tensors, taking a core the other
    # worker needs (~15 CPU-s of the quick loop). Read when torch loads, i.e. after this, during collection.
    environment.setenv("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
    config.stash[_ENVIRONMENT], config.stash[_FOLDERS] = environment, folders


def pytest_unconfigure(config: pytest.Config) -> None:
    """The environment as it was before the session; the session's folders removed."""
    if _ENVIRONMENT in config.stash:
        config.stash[_ENVIRONMENT].undo()
        for folder in config.stash[_FOLDERS].values():
            shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_finish() -> None:
    """What collection imported (torch, Dagster, pandas: millions of objects) lives until the end: moved out of the
    garbage collector's sight, so that its full collections stop walking it again and again (~2% of the loop's CPU)."""
    gc.freeze()


@pytest.fixture(autouse=True, scope="session")
def engine_cache(pytestconfig: pytest.Config) -> Iterator[Path]:
    """The session's converted-model cache, as the default of every model made in this process."""
    from lightly_assets.embedding.engines import compiled_cache

    compiled_cache.DEFAULT_ROOT = pytestconfig.stash[_FOLDERS]["engines"]
    yield compiled_cache.DEFAULT_ROOT
    compiled_cache.DEFAULT_ROOT = None


#: Markers of tests whose first run in a process costs seconds of CPU (imports, conversions): one worker runs each.
HEAVY = ("lightly_tools", "lightly_studio", "openvino")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """How `-n` (pytest-xdist, `--dist loadgroup`) shares the tests out: whichever worker is free takes the next
    test, except for groups. The end-to-end tests of one module run on one worker, so its module-wide servers
    (`dagster dev`, LightlyStudio) start once; the tests of each `HEAVY` marker run on one worker, so only one pays
    for the imports (Lightly's tools, LightlyStudio) or conversions (OpenVINO) they share: with two workers on two
    cores, every CPU-second both pay is half a second of the loop's wall time."""
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.xdist_group(f"e2e-{item.module.__name__ if item.module else item.name}"))
            continue
        heavy = next((name for name in HEAVY if item.get_closest_marker(name)), None)
        if heavy:
            item.add_marker(pytest.mark.xdist_group(heavy))


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


@pytest.fixture
def made_on(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the threads on which models are made."""
    from lightly_assets.embedding import factory  # as the engine cache fixture: conftest imports no package module

    threads: list[str] = []
    make = factory._create

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        threads.append(threading.current_thread().name)
        return make(*args, **kwargs)

    monkeypatch.setattr(factory, "_create", recording)
    return threads
