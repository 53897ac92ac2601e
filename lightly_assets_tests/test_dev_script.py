"""`bash scripts/dev.sh ui` as a user meets it: no warning about the virtual environment, and SIGINT to its process
group (Ctrl+C) stops dg dev and every server it started, also when the script runs as a background job of another
script (which starts it with SIGINT ignored)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lightly_assets_tests.conftest import REPO, free_port

pytestmark = pytest.mark.e2e  # dg dev: its webserver, daemon and code servers


def _project(root: Path) -> Path:
    """A copy of the project's entry points whose `.venv` is this interpreter's, already "installed" for setup()."""
    for name in ("pyproject.toml", "workspace.yaml", "scripts/dev.sh"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, root / name)
    (root / "lightly_assets").symlink_to(REPO / "lightly_assets")  # dg finds the project's module in its root
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to(sys.executable)
    (bin_dir / "dg").symlink_to(Path(sys.executable).with_name("dg"))
    digest = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()[:16]
    (root / ".venv" / ".lightly-assets-installed").write_text(f"{digest} test\n")  # setup() installs nothing
    return root


def _session(sid: int) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,sid,stat,args"], capture_output=True, text=True, check=True).stdout
    rows = [line.split(None, 3) for line in ps.splitlines()[1:]]
    return [row[3][:120] for row in rows if len(row) == 4 and row[1] == str(sid) and not row[2].startswith("Z")]


def test_ui_has_no_venv_warning_and_sigint_stops_every_process(tmp_path: Path) -> None:
    root, port = _project(tmp_path / "project"), free_port()
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env |= {
        "PORT": str(port),
        "DAGSTER_HOME": str(tmp_path / "home"),
        "LIGHTLY_ASSETS_DATA_DIR": str(tmp_path / "data"),
    }
    (tmp_path / "data").mkdir()
    log_path = tmp_path / "ui.log"
    with open(log_path, "w") as log:  # a background job of a non-interactive shell: SIGINT arrives ignored
        proc = subprocess.Popen(
            ["bash", "-c", "bash scripts/dev.sh ui & wait"],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(2)
        assert len(_session(proc.pid)) >= 4, _session(proc.pid)  # dg dev, webserver, daemon, code server
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C sends to the terminal's process group
        deadline = time.monotonic() + 60
        while _session(proc.pid) and time.monotonic() < deadline:
            time.sleep(1)
        assert _session(proc.pid) == [], log_path.read_text()[-3000:]
        assert "does not match the virtual environment" not in log_path.read_text()
    finally:
        if _session(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
