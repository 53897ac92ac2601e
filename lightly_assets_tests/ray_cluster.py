"""A two-node Ray cluster on 127.0.0.1, for tests and benchmarks that run inside a network namespace of their own.

`in_namespace(argv)` is the command that runs a script in a new network and pid namespace with loopback only
(`unshare -n --fork --pid --mount-proc`): Ray binds some listeners to the machine's interface address even with
`--node-ip-address 127.0.0.1`, and there no such address exists. Inside, the script is pid 1: `start()` starts a
head and a worker node (1 CPU each, a temp dir of their own), `stop_all()` stops every other process of the
namespace by pid, and whatever is left dies with the namespace when the script exits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PORT = 6390
ADDRESS = f"127.0.0.1:{PORT}"


def in_namespace(argv: list[str]) -> list[str]:
    return ["unshare", "-n", "--fork", "--pid", "--mount-proc", *argv]


def namespaces_available() -> bool:
    return (
        shutil.which("unshare") is not None
        and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    )


@dataclass
class Cluster:
    address: str
    temp_dir: Path
    worker_raylet: int  # pid of the worker node's raylet; its children are that node's Ray workers


def start(cpus_per_node: int = 1) -> Cluster:
    """Loopback up, then `ray start --head` and one `ray start --address` on 127.0.0.1."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's unix socket paths must stay short
    ray = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    node = ["--node-ip-address", "127.0.0.1", "--num-cpus", str(cpus_per_node), "--temp-dir", str(temp)]
    node += ["--disable-usage-stats", "--object-store-memory", "100000000"]
    head = ["--head", "--port", str(PORT), "--include-dashboard=false"]
    subprocess.run([ray, "start", *head, *node], env=env, check=True, capture_output=True, timeout=120)
    head_pids = set(processes())
    worker = ["--address", ADDRESS]
    subprocess.run([ray, "start", *worker, *node], env=env, check=True, capture_output=True, timeout=120)
    raylet = next(p for p, cmd in processes().items() if p not in head_pids and "raylet/raylet" in cmd)
    return Cluster(address=ADDRESS, temp_dir=temp, worker_raylet=raylet)


def processes() -> dict[int, str]:
    """Every live process of this pid namespace but ourselves, with its command line (Ray's process titles)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if cmdline and state != "Z":
                found[int(entry.name)] = cmdline
    return found


def children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry.name))
            except OSError:
                continue
    return kids


def stop_all(cluster: Cluster | None = None) -> list[str]:
    """SIGTERM, then SIGKILL, every process of the namespace by pid; returns what is still running (nothing)."""
    pids = list(processes())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(p in processes() for p in pids):
            _reap()
            time.sleep(0.1)
    _reap()
    if cluster is not None:
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
    return sorted(processes().values())


def _reap() -> None:
    """We are pid 1 here: collect the exit status of orphans that died."""
    with contextlib.suppress(ChildProcessError):  # no children left
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            continue
