"""Photos decoded in worker processes, for decoders that have every core to themselves (beside a GPU).

Decoder threads stop scaling at about 8 cores: Pillow releases the GIL while it decodes and resizes, but the Python
around those calls holds it. On an H200's 16 Xeon cores, 2,000 photos of 800x600 decoded alone: 16 threads 1,474/s
with 8.3 cores busy, a pool of 16 processes 2,397/s, its start included. The processes are forked from a server that
imports only the decoding module (forking this process, which runs CUDA and threads, is unsafe), so the pool costs
an interpreter's start once: below PROCESS_MIN_PHOTOS photos the threads decode them as before. Videos stay in
threads (a video is decoded in order by one decoder anyway); so do all samples on a CPU, where the decoders share
the cores with the network.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

log = logging.getLogger(__name__)

PROCESS_MIN_PHOTOS = 5_000  # the pool's start (~1 s) is won back from a few thousand photos on
MIN_CORES = 4  # fewer cores than this: threads (the GIL is not the limit there)
CHUNK = 16  # photos per call into a process: few round trips, small pieces at the end
SERVER_IMPORTS = ["lightly_assets.embedding.decode"]  # what the fork server loads once, for every process


def pool_size(photos: int, own_cores: bool, workers: int, cores: int) -> int:
    """How many processes decode the photos: 0 (threads only) unless the decoders have the cores to themselves,
    there are enough of both; then one per decode thread (each thread waits on one process)."""
    if not own_cores or photos < PROCESS_MIN_PHOTOS or cores < MIN_CORES:
        return 0
    return max(1, workers)


class PhotoPool:
    """`decode(chunk, ...)` runs `work(chunk, ...)` in a process; in the calling thread if the pool broke."""

    def __init__(self, processes: int, work: Callable[..., list[Any]]) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(SERVER_IMPORTS)
        self._work = work
        self._executor = ProcessPoolExecutor(processes, mp_context=context)
        self._broken = self._closed = False

    def decode(self, *args: Any) -> list[Any]:
        """The work's result; [] once the pool is closed (the decoder is stopping)."""
        if self._broken:
            return self._work(*args)
        try:
            return self._executor.submit(self._work, *args).result()
        except CancelledError:
            return []
        except BrokenProcessPool as exc:  # a process died (killed, out of memory): go on in threads
            if not self._broken:
                log.warning("photo decoding processes stopped (%s); decoding in threads", exc)
            self._broken = True
            return self._work(*args)
        except RuntimeError:
            if self._closed:  # submitted after close: the decoder is stopping
                return []
            raise

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
