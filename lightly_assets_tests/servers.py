"""Servers a test starts on 127.0.0.1 and stops by pid, and plain HTTP to them (no proxy: loopback only)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

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


def http(url: str, body: dict[str, Any] | None = None) -> bytes:
    """GET `url`, or POST `body` as JSON to it; the answer's bytes (an HTTP error status raises)."""
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return response.read()


def get_json(url: str, body: dict[str, Any] | None = None) -> Any:
    return json.loads(http(url, body))


def start_gui(gui_command: str, port: int, cache: Path) -> subprocess.Popen[bytes]:
    """LightlyStudio's GUI server, started by the command an upload prints, unable to download anything."""
    env = os.environ | {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        # Anything that tries the network fails at once instead of downloading.
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
        "HF_HUB_OFFLINE": "1",
        "LIGHTLY_STUDIO_MODEL_CACHE_DIR": str(cache),
    }
    command = f"exec env {gui_command} --host 127.0.0.1 --port {port} --no-browser"
    return subprocess.Popen(["bash", "-c", command], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_healthy(base: str, server: subprocess.Popen[bytes], timeout_s: float = 90) -> None:
    """Returns once LightlyStudio at `base` answers healthy; fails with the server's output if it exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"GUI server exited: {server.stdout.read().decode()[-3000:]}")
        try:
            if get_json(f"{base}/healthz") == {"status": "healthy"}:
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("GUI server did not become healthy")


def stop(server: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Stop a server this test started, by its own process: politely, then for good."""
    server.terminate()
    try:
        server.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
