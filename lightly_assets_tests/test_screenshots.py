"""The documentation's screenshots, taken as a user meets the UIs: `lightly-assets run` on two example datasets,
then Dagster's UI (`dagster dev`: the asset graph, the run) and LightlyStudio's (`lightly-assets browse --open`: the
image grid) in a real headless Chromium.

Each picture is asserted to show what the docs say it shows, and to stay small (a palette PNG under 150 KB).
By default they land in the test's folder; to refresh the committed ones after a UI change:

    LIGHTLY_ASSETS_SCREENSHOTS=docs/images python -m pytest -m screenshots
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from lightly_assets_tests import EXAMPLE_DATA, REPO
from lightly_assets_tests.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.screenshots]  # a whole run, two servers and a browser: minutes

DATASETS = ("images_weak_labels", "videos")
MAX_BYTES = 150_000
VIEWPORT = {"width": 1400, "height": 860}
STUDIO_VIEWPORT = {"width": 1280, "height": 800}  # photos compress less than UI chrome: fewer pixels
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


def _wait(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError as exc:  # not up yet
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last}")


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]


@contextlib.contextmanager
def _server(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A server in its own process group, stopped by that group's id."""
    with open(log, "w") as out:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _save_small(raw: Path, dest: Path) -> None:
    """Quantise the browser's PNG to a 256-colour palette: UI pictures keep their look at a fraction of the size."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(raw) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        tmp = dest.with_suffix(".tmp.png")
        small.save(tmp, optimize=True)
    tmp.replace(dest)
    assert dest.stat().st_size < MAX_BYTES, f"{dest}: {dest.stat().st_size} bytes, more than {MAX_BYTES}"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict:
    """Two example datasets materialized by `lightly-assets run`, as the README's tour does."""
    base = tmp_path_factory.mktemp("screens")
    data, outputs, home = base / "data", base / "outputs", base / "home"
    for name in DATASETS:
        shutil.copytree(EXAMPLE_DATA / name, data / name)
    env = os.environ | {
        "DAGSTER_HOME": str(home),
        "LIGHTLY_ASSETS_DATA_DIR": str(data),
        "LIGHTLY_ASSETS_OUTPUT_DIR": str(outputs),
        "LIGHTLY_STUDIO_ANALYTICS_ENABLED": "false",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        [sys.executable, "-m", "lightly_assets", "run", *DATASETS],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    target = Path(os.environ.get("LIGHTLY_ASSETS_SCREENSHOTS") or base / "shots")
    return {"base": base, "env": env, "target": target if target.is_absolute() else REPO / target}


def _browser(playwright):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "Debian's chromium is not installed (`apt-get install chromium`; `bash scripts/dev.sh test` has it)"
        )
    return playwright.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)


def test_dagster_asset_graph_and_run(project) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base, port = project["base"], free_port()
    dagster = [str(Path(sys.executable).with_name("dagster")), "dev", "-h", "127.0.0.1", "-p", str(port)]
    with _server(dagster, project["env"], base / "dagster_dev.log"):
        _wait(lambda: _graphql(port, "{ version }"), 240, "the Dagster webserver")
        runs = _graphql(port, "{ runsOrError { ... on Runs { results { runId status } } } }")
        results = runs["runsOrError"]["results"]
        assert [r["status"] for r in results] == ["SUCCESS"] * len(DATASETS)
        with sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page(viewport=VIEWPORT)
            try:
                url = f"http://127.0.0.1:{port}"
                page.goto(f"{url}/locations/lightly_assets/asset-groups/lightly", wait_until="domcontentloaded")
                with contextlib.suppress(PlaywrightTimeout):  # Dagster's first-visit dialog, when it shows
                    page.get_by_role("button", name="Skip").click(timeout=15_000)
                for name in ("file_index", "embeddings_csv", "uploaded_dataset"):
                    page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
                page.wait_for_timeout(2_000)  # the graph's layout settles
                page.screenshot(path=str(base / "graph.png"))
                page.goto(f"{url}/runs/{results[-1]['runId']}", wait_until="domcontentloaded")
                page.get_by_text("Success", exact=False).first.wait_for(timeout=60_000)
                page.get_by_text("uploaded_dataset", exact=False).first.wait_for(timeout=60_000)
                page.wait_for_timeout(2_000)
                page.screenshot(path=str(base / "run.png"))
            finally:
                browser.close()
    _save_small(base / "graph.png", project["target"] / "dagster_asset_graph.png")
    _save_small(base / "run.png", project["target"] / "dagster_run.png")


def test_lightly_studio_grid(project) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base, port = project["base"], free_port()
    env = project["env"] | {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    browse = [sys.executable, "-m", "lightly_assets", "browse", "--open", "--host", "127.0.0.1"]
    browse += ["--port", str(port)]
    log = base / "browse.log"
    with _server(browse, env, log):
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
                return response.status == 200

        _wait(healthy, 180, "LightlyStudio's GUI")
        link = next(
            line.split(": ", 1)[1].strip()
            for line in log.read_text().splitlines()
            if line.strip().startswith(f"{DATASETS[0]}: http")
        )
        with sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_page(viewport=STUDIO_VIEWPORT)
            try:
                page.goto(link, wait_until="domcontentloaded")
                page.get_by_text("Showing 13 images").wait_for(timeout=90_000)
                with contextlib.suppress(PlaywrightTimeout):  # LightlyStudio's first-visit tour, when it shows
                    page.get_by_role("button", name="Dismiss").click(timeout=5_000)
                page.get_by_role("checkbox", name="cats").wait_for(timeout=30_000)  # weak labels are tags
                page.wait_for_timeout(3_000)  # thumbnails load
                page.screenshot(path=str(base / "studio.png"))
            finally:
                browser.close()
    _save_small(base / "studio.png", project["target"] / "lightly_studio_grid.png")
