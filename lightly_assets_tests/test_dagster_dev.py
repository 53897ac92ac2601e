"""End to end: `dagster dev` (webserver + daemon) on loopback, a dataset folder dropped into the data root, the
sensor's run materializing all five assets with passing checks (read through GraphQL, and each dataset's result on
the asset's Checks tab), and a real headless Chromium finding the assets in the UI."""

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
from pathlib import Path

import pytest

from lightly_assets_tests import EXAMPLE_DATA, REPO
from lightly_assets_tests.servers import free_port

ASSETS = [
    "file_index",
    "frame_index",
    "embeddings",
    "embeddings_csv",
    "duplicates",
    "selection",
    "uploaded_dataset",
    "published_curation",
    "data_issues",
]
DATASET = "images_flat"


def graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.load(response)
    assert "errors" not in payload, payload
    return payload["data"]


def wait_for(predicate, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError as exc:  # server not up yet
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last}")


def _chromium(playwright):
    """Debian's headless Chromium, the browser the tests look at the UI with."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(
            "Debian's chromium is not installed (`apt-get install chromium`; `bash scripts/dev.sh test` does it)"
        )
    return playwright.chromium.launch(
        executable_path=chromium,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--disable-quic"],
    )  # fmt: skip


def _checks_tab(port: int, asset: str, shot: Path) -> str:
    """The text of an asset's Checks tab in the UI, as a user opening it sees it (first check selected)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = _chromium(p)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.goto(f"http://127.0.0.1:{port}/assets/{asset}?view=checks", wait_until="domcontentloaded")
            with contextlib.suppress(PlaywrightTimeout):  # Dagster's first-visit dialog, when it shows
                page.get_by_role("button", name="Skip").click(timeout=15_000)
            page.get_by_text("Latest execution").wait_for(timeout=60_000)
            page.get_by_text("Passed", exact=True).first.wait_for(timeout=60_000)
            return page.inner_text("body")
        finally:
            page.screenshot(path=str(shot))
            browser.close()


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    home, data, outputs = base / "home", base / "data", base / "outputs"
    for d in (home, data, outputs):
        d.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "LIGHTLY_ASSETS_DATA_DIR": str(data),
        "LIGHTLY_ASSETS_OUTPUT_DIR": str(outputs),
        "LIGHTLY_ASSETS_SENSOR_INTERVAL": "2",
        "LIGHTLY_STUDIO_ANALYTICS_ENABLED": "false",
    }
    log = open(base / "dagster_dev.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster")), "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: graphql(port, "{ version }"), 180, "the Dagster webserver")
        yield {"port": port, "data": data, "outputs": outputs, "base": base}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group of dagster dev's own process: webserver, daemon, code server
        try:  # it stops in ~3 s; after the browser tests its webserver has waited 30 s and more for old connections
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


MATERIALIZATIONS = """
query($keys: [AssetKeyInput!], $partition: String!) {
  assetNodes(assetKeys: $keys) { assetKey { path } assetMaterializations(partitions: [$partition]) { runId } }
}"""

CHECKS = """
query($key: AssetKeyInput!, $check: String!, $partition: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $check, partition: $partition, limit: 1) {
    status evaluation { success severity }
  }
}"""

CHECK_NAMES = """
query { assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }
"""


LATEST_METADATA = """
query($key: AssetKeyInput!, $partition: String!) {
  assetNodes(assetKeys: [$key]) {
    assetMaterializations(partitions: [$partition], limit: 1) {
      metadataEntries { __typename label ... on PathMetadataEntry { path } }
    }
  }
}"""


def _materialized(port: int) -> set[str]:
    data = graphql(port, MATERIALIZATIONS, {"keys": [{"path": [a]} for a in ASSETS], "partition": DATASET})
    return {node["assetKey"]["path"][0] for node in data["assetNodes"] if node["assetMaterializations"]}


@pytest.mark.e2e  # `dagster dev` and a whole run: minutes
def test_sensor_run_materializes_all_assets_with_passing_checks(dagster_dev) -> None:
    port = dagster_dev["port"]
    shutil.copytree(EXAMPLE_DATA / DATASET, dagster_dev["data"] / DATASET)
    wait_for(lambda: _materialized(port) == set(ASSETS), 420, "the sensor's run", interval=3)
    nodes = graphql(port, CHECK_NAMES)["assetNodes"]
    checks = [(n["assetKey"]["path"][0], c["name"]) for n in nodes for c in n["assetChecksOrError"]["checks"]]
    from lightly_assets.definitions import defs

    declared = {(k.asset_key.path[0], k.name) for k in defs().resolve_asset_graph().asset_check_keys}
    assert set(checks) == declared  # the UI shows every check the definitions declare

    def finished() -> dict[str, str] | None:  # the last asset's check is stored just after its materialization
        results = {}
        for asset, check in checks:
            execution = graphql(port, CHECKS, {"key": {"path": [asset]}, "check": check, "partition": DATASET})
            results[f"{asset}.{check}"] = execution["assetCheckExecutions"][0]["status"]
        return None if {"IN_PROGRESS", "PLANNED"} & set(results.values()) else results

    results = wait_for(finished, 120, "the check results")
    # No checkpoint in tests: random weights, said loudly, and their similarities mean nothing (so near-duplicate
    # groups are noise): those warnings are expected, every other check passes.
    expected = {"embeddings.trained_weights", "duplicates.similarities_meaningful", "duplicates.no_duplicates"}
    assert {k: v for k, v in results.items() if k not in expected} == {
        k: "SUCCEEDED" for k in results if k not in expected
    }
    assert results["embeddings.trained_weights"] == results["duplicates.similarities_meaningful"] == "FAILED"
    # The checks are partitioned like their asset: the UI's Checks tab gives this dataset's own result.
    text = _checks_tab(port, "embeddings_csv", dagster_dev["base"] / "checks_tab.png")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert {"column_order", "label_counts"} <= set(lines), text
    assert lines[lines.index("Evaluation result") + 1] == "Passed", text
    assert lines[lines.index("Partition") + 1] == DATASET, text
    csv = dagster_dev["outputs"] / DATASET / "embeddings.csv"
    assert csv.is_file()
    entries = graphql(port, LATEST_METADATA, {"key": {"path": ["embeddings_csv"]}, "partition": DATASET})
    paths = {
        e["label"]: e.get("path")
        for e in entries["assetNodes"][0]["assetMaterializations"][0]["metadataEntries"]
        if e["__typename"] == "PathMetadataEntry"
    }
    assert paths["csv"] == str(csv.resolve())  # the CSV itself: no IO manager pickle, no `path` row
    assert "path" not in paths


@pytest.mark.e2e
def test_browser_shows_the_assets_and_materialize_raises_no_false_alarm(dagster_dev) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    shot = dagster_dev["base"] / "asset_graph.png"
    viewport = {"width": 1600, "height": 1000}
    boxes: dict[str, dict | None] = {}
    with sync_playwright() as p:
        browser = _chromium(p)
        page = browser.new_page(viewport=viewport)
        try:
            group = f"http://127.0.0.1:{dagster_dev['port']}/locations/lightly_assets/asset-groups/lightly"
            page.goto(group, wait_until="domcontentloaded")  # the main job's group (training is a group of its own)
            with contextlib.suppress(PlaywrightTimeout):  # Dagster's first-visit dialog, when it shows
                page.get_by_role("button", name="Skip").click(timeout=15_000)
            for name in ASSETS:
                shown = page.get_by_text(name, exact=True).first
                shown.wait_for(timeout=60_000)
                boxes[name] = shown.bounding_box()
            page.screenshot(path=str(shot))
            # Materialize all opens the launch dialog straight away: no "Are you sure? ... upstream assets not
            # materialized: embedding_model" (the optional training asset is no upstream of the group)
            page.get_by_role("button", name="Materialize all").first.click(timeout=60_000)
            dialog = page.locator("[role=dialog]").first
            dialog.get_by_text("Launch runs to materialize").wait_for(timeout=60_000)
            text = dialog.inner_text()
            assert "Are you sure" not in text and "embedding_model" not in text, text
            assert "Upstream data missing" not in text, text
            dialog.get_by_role("button", name="Cancel").click()
        finally:
            page.screenshot(path=str(dagster_dev["base"] / "last.png"))  # what the UI showed, also on failure
            browser.close()

    def in_picture(box: dict | None) -> bool:
        if box is None or min(box["x"], box["y"]) < 0 or min(box["width"], box["height"]) <= 0:
            return False
        return box["x"] + box["width"] <= viewport["width"] and box["y"] + box["height"] <= viewport["height"]

    # Every asset's name is drawn inside the screenshot, not scrolled or zoomed out of it (see `shot`).
    assert {name: box for name, box in boxes.items() if not in_picture(box)} == {}, shot


JOB_RUNS = """
query($job: String!) {
  pipelineOrError(
    params: {pipelineName: $job, repositoryName: "__repository__", repositoryLocationName: "lightly_assets"}
  ) {
    ... on Pipeline { runs(limit: 20) { runId status tags { key value } } }
  }
  runsOrError(limit: 20) {
    ... on Runs { results { runId repositoryOrigin { repositoryLocationName repositoryName } } }
  }
}"""


@pytest.mark.e2e
def test_a_cli_run_is_listed_with_the_job_like_the_uis_own(dagster_dev) -> None:
    """`lightly-assets run` on the instance `dagster dev` serves: the job's Runs tab and the Overview timeline find
    the run by its code location (runs with no origin show under Runs only), and our bookkeeping tags are hidden."""
    port = dagster_dev["port"]
    if not (dagster_dev["data"] / DATASET).exists():
        shutil.copytree(EXAMPLE_DATA / DATASET, dagster_dev["data"] / DATASET)
    wait_for(lambda: _materialized(port) == set(ASSETS), 420, "the sensor's run", interval=3)  # no run at once
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_dev["base"] / "home"),
        "LIGHTLY_ASSETS_DATA_DIR": str(dagster_dev["data"]),
        "LIGHTLY_ASSETS_OUTPUT_DIR": str(dagster_dev["outputs"]),
    }
    out = subprocess.run(
        [sys.executable, "-m", "lightly_assets", "run", DATASET],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    run_id = out.stdout.split("(run ", 1)[1].split(")", 1)[0]
    data = graphql(port, JOB_RUNS, {"job": "lightly_assets_job"})
    job_runs = {r["runId"]: r for r in data["pipelineOrError"]["runs"]}
    assert run_id in job_runs and job_runs[run_id]["status"] == "SUCCESS"  # the job's Runs tab lists it
    origins = {r["runId"]: r["repositoryOrigin"] for r in data["runsOrError"]["results"]}
    assert origins[run_id] == {"repositoryLocationName": "lightly_assets", "repositoryName": "__repository__"}
    tags = {t["key"]: t["value"] for t in job_runs[run_id]["tags"]}
    assert tags["dagster/partition"] == DATASET
    shown = [key for key in tags if not key.startswith((".dagster/", "dagster/"))]
    assert not shown, shown  # the process bookkeeping is under Dagster's hidden prefix
