"""Photos decoded in worker processes, for decoders that have every core to themselves (beside a GPU).

Decoder threads stop scaling at about 8 cores: Pillow releases the GIL while it decodes and resizes, but the Python
around those calls holds it. On an H200's 16 Xeon cores, 2,000 photos of 800x600 decoded alone: 16 threads 1,474/s
with 8.3 cores busy, a pool of 16 processes 2,397/s, its start included. Each worker is a fresh interpreter
(`python -m` this module) that imports only what decoding needs, reads pickled work on its standard input and writes
the results on its standard output; multiprocessing's own pools would re-import the program's main module in every
process (the `lightly-assets` command: Dagster, 2.3 s each) or fork a process that runs CUDA and threads. A worker
costs an interpreter's start, so below PROCESS_MIN_PHOTOS photos the threads decode them as before. Videos stay in
threads (a video is decoded in order by one decoder anyway); so does everything on a CPU, where the decoders share
the cores with the network.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

PROCESS_MIN_PHOTOS = 5_000  # the workers' start (an interpreter each, in parallel) is won back from here on
MIN_CORES = 4  # fewer cores than this: threads (the GIL is not the limit there)
CHUNK = 16  # photos per call into a process: few round trips, small pieces at the end
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # where `lightly_assets` is imported from


def pool_size(photos: int, own_cores: bool, workers: int, cores: int) -> int:
    """How many processes decode the photos: 0 (threads only) unless the decoders have the cores to themselves,
    there are enough of both; then one per decode thread (each thread waits on one process)."""
    if not own_cores or photos < PROCESS_MIN_PHOTOS or cores < MIN_CORES:
        return 0
    return max(1, workers)


class _Worker:
    """One decoding process and its two pipes."""

    def __init__(self) -> None:
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": _PACKAGE_ROOT + (os.pathsep + path if path else "")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )

    def call(self, work: Callable[..., list[Any]], args: tuple[Any, ...]) -> list[Any]:
        """`work(*args)` in the process; OSError, EOFError or UnpicklingError when it died."""
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        pickle.dump((work, args), stdin, protocol=pickle.HIGHEST_PROTOCOL)
        stdin.flush()
        return pickle.load(stdout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class PhotoPool:
    """`decode(*args)` runs `work(*args)` in a worker process (started on first use, one per calling thread at
    most `processes`); in the calling thread once a worker has died."""

    def __init__(self, processes: int, work: Callable[..., list[Any]]) -> None:
        self._work, self._processes = work, processes
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._started: list[_Worker] = []
        self._lock = threading.Lock()
        self._broken = self._closed = False

    def decode(self, *args: Any) -> list[Any]:
        """The work's result; [] once the pool is closed (the decoder is stopping)."""
        worker = self._worker()
        if worker is None:
            return [] if self._closed else self._work(*args)
        try:
            result = worker.call(self._work, args)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            if self._closed:
                return []
            self._break(exc)
            return self._work(*args)
        self._idle.put(worker)
        return result

    def _worker(self) -> _Worker | None:
        """An idle worker, a new one while fewer than `processes` run, else the next freed; None once closed."""
        while not (self._closed or self._broken):
            with contextlib.suppress(queue.Empty):  # none idle: start one below, or wait for one again
                return self._idle.get(timeout=0.0 if len(self._started) < self._processes else 0.1)
            with self._lock:
                if not (self._closed or self._broken) and len(self._started) < self._processes:
                    self._started.append(_Worker())
                    return self._started[-1]
        return None

    def _break(self, exc: BaseException) -> None:
        """A worker died (killed, out of memory): the others are stopped, and the threads decode from now on."""
        if not self._broken:
            log.warning("a photo-decoding process stopped (%s: %s); decoding in threads", type(exc).__name__, exc)
        self._broken = True
        self.close(broken=True)

    def close(self, broken: bool = False) -> None:
        with self._lock:
            self._closed = self._closed or not broken
            workers, self._started = self._started, []
        for worker in workers:
            worker.kill()


def _serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """A worker's loop: (work, args) in, work(*args) out, until its standard input closes."""
    while True:
        try:
            work, args = pickle.load(requests)
        except EOFError:
            return
        pickle.dump(work(*args), replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


if __name__ == "__main__":
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the replies
    _serve(requests, replies)
