"""LightlyStudio's GUI as a user meets it: `lightly-assets browse` gives each dataset's link and serves the GUI, a
real headless Chromium opens the link, filters by a weak-label tag, and finds none of our bookkeeping among the
filters. Screenshots of every step stay in the test's folder (printed), also when a step fails."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dagster import AssetMaterialization, DagsterInstance

from lightly_assets.cli import _prepare_home
from lightly_assets.defs.partitions import datasets_partitions
from lightly_assets.defs.publishing import upload_metadata
from lightly_assets.defs.resources import PublishTargetResource
from lightly_assets.publish.studio.embedder import space_key
from lightly_assets_tests import REPO
from lightly_assets_tests.media import make_cats_and_dogs, make_video
from lightly_assets_tests.servers import NO_IPV6_LOCALHOST
from lightly_assets_tests.tables import DIM, frame_index, image_rows, video_rows, write_csv

pytestmark = pytest.mark.e2e  # LightlyStudio's import, its GUI server and a browser

# Our bookkeeping, never a filter a user meets (earlier versions showed the first three on videos, which
# LightlyStudio titles as "Source Size", "Source Mtime Ns", "Indexed Frames").
INTERNAL = ("source_size", "source_mtime_ns", "indexed_frames", "lightly_assets_frame_set", "mtime_ns")


def shown_as(key: str) -> str:
    """A metadata key as LightlyStudio's filter panel writes it, lower-cased: `source_size` → `source size`."""
    return key.replace("_", " ").lower()


LINK = re.compile(r"^  (\S.*): (http://\S+)$", re.MULTILINE)
STARTING = re.compile(r"^starting LightlyStudio on (http://\S+) ", re.MULTILINE)


def _publish(data: Path, out: Path) -> None:
    """Upload two datasets as `uploaded_dataset` does, and record its metadata where `browse` reads it."""
    target = PublishTargetResource(studio_db_file=str(out / "lightly_studio.db"))
    with DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(datasets_partitions.name, ["animals", "clips"])
        for name, rows in (("animals", image_rows(data / "animals")), ("clips", video_rows(data / "clips"))):
            index, csv = frame_index(rows), out / name / "embeddings.csv"
            csv.parent.mkdir(parents=True)
            write_csv(index, csv)
            result = target.publish(name, data / name, out, index, index, csv)
            instance.report_runless_asset_event(
                AssetMaterialization("uploaded_dataset", partition=name, metadata=upload_metadata(result))
            )
            # the space the default model's vectors are stored under, as `embeddings` records it
            space = {"studio_space": space_key(DIM)}
            instance.report_runless_asset_event(AssetMaterialization("embeddings", partition=name, metadata=space))


def _wait_started(server: subprocess.Popen, log: Path, timeout_s: float = 120) -> str:
    """The address `browse --open` says it serves, once it has said it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := STARTING.search(log.read_text()):
            return found.group(1)
        if server.poll() is not None:
            raise AssertionError(f"`lightly-assets browse --open` exited: {log.read_text()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"`lightly-assets browse --open` said nothing: {log.read_text()[-3000:]}")


def _search_by_image(base: str, collection_id: str, image: Path) -> list[float]:
    """What LightlyStudio's GUI does when a user drops an example image into its search box."""
    boundary = "lightly-assets-test"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{image.name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + image.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{base}/api/image_embedding/from_file/for_collection/{collection_id}",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def _wait_healthy(base: str, server: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"`lightly-assets browse --open` exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"LightlyStudio did not come up: {log.read_text()[-3000:]}")


def test_browse_link_opens_the_dataset_its_tags_filter_and_no_bookkeeping_is_a_filter(
    tmp_path: Path, monkeypatch
) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "Debian's chromium is not installed (`apt-get install chromium`; `bash scripts/dev.sh test` does it)"
        )
    data, out, home = tmp_path / "data", tmp_path / "out", tmp_path / "home"
    make_cats_and_dogs(data / "animals")  # tags cats and dogs, three images each
    make_video(data / "clips" / "clip.mp4")
    env = {"DAGSTER_HOME": str(home), "LIGHTLY_ASSETS_DATA_DIR": str(data), "LIGHTLY_ASSETS_OUTPUT_DIR": str(out)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _prepare_home()
    _publish(data, out)

    log_path = tmp_path / "browse.log"
    server_env = os.environ | env | {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    for name in ("LIGHTLY_STUDIO_HOST", "LIGHTLY_STUDIO_PORT"):
        server_env.pop(name, None)
    with open(log_path, "w") as log:  # no flags, on a machine whose `localhost` has no IPv6 entry
        server = subprocess.Popen(
            [sys.executable, "-c", NO_IPV6_LOCALHOST, "lightly_assets", "browse", "--open"],
            cwd=REPO, env=server_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    shots: list[Path] = []
    try:
        base = _wait_started(server, log_path)
        assert base.startswith("http://127.0.0.1:")  # 8001, or a free port when another GUI holds 8001
        _wait_healthy(base, server, log_path)
        links = dict(LINK.findall(log_path.read_text()))
        assert set(links) == {"animals", "clips"} and all(url.startswith(f"{base}/datasets/") for url in links.values())
        # search by an example image works with the default model (no text tower: said before anyone types)
        printed = log_path.read_text()
        assert "search: by example image, with lightly" in printed and "not by text" in printed, printed
        animals_id = links["animals"].split("/datasets/", 1)[1].split("/", 1)[0]
        vector = _search_by_image(base, animals_id, next((data / "animals").rglob("*.png")))
        assert len(vector) == DIM and any(vector)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 900})

            def shot(name: str) -> None:
                shots.append(tmp_path / f"studio_{name}.png")
                page.screenshot(path=str(shots[-1]))

            try:
                page.goto(links["animals"], wait_until="domcontentloaded")
                page.get_by_text("Showing 6 images").wait_for(timeout=90_000)
                try:  # LightlyStudio's first-visit tour, when it shows
                    page.get_by_role("button", name="Dismiss").click(timeout=5_000)
                except PlaywrightTimeout:
                    pass
                shot("images")
                page.get_by_role("checkbox", name="cats").click()
                page.get_by_text("Showing 3 of 6 images").wait_for(timeout=30_000)
                shot("images_tag_cats")
                page.goto(links["clips"], wait_until="domcontentloaded")
                page.get_by_text("Showing 1 video").first.wait_for(timeout=90_000)
                page.get_by_text("Metadata", exact=True).wait_for(timeout=30_000)
                shot("videos_filters")
                filters = page.inner_text("body")
                assert "Frames" in filters  # the frames of each video: a fact a user filters on
                for fact in ("file_size_mb", "modified_utc"):  # numbers, so LightlyStudio offers range filters
                    assert shown_as(fact) in filters.lower(), filters
                assert not [key for key in INTERNAL if shown_as(key) in filters.lower()], filters
            except Exception:
                shot("failure")
                raise
            finally:
                browser.close()
        printed = log_path.read_text()
        assert "Usage tracking is disabled" not in printed  # its 404 noise is filtered
        assert printed.count("search: ") == 1  # the search note once, not per dataset
        assert "Traceback" not in printed
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        print("screenshots:", *map(str, shots), sep="\n  ")
