"""Progress lines for long steps: count, rate and time left, at most every few seconds so logs stay readable."""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    """Callable `(done, total)` that emits a line through `emit` when enough time passed, and at the end (once).

    The first call marks the start: callers report `(already_done, total)` before working, so work done
    earlier (vectors reused from a cache) does not inflate the rate; when everything was done earlier the
    line says so instead of printing a rate.
    """

    def __init__(self, what: str, emit: Callable[[str], None], every_s: float = 5.0) -> None:
        self.what = what
        self.emit = emit
        self.every_s = every_s
        self.start = time.perf_counter()
        self.last = self.start
        self.base: int | None = None  # the count at the first call (e.g. vectors reused from a cache)
        self.ended = False  # the end was reported: reporting it again (the embedding step does) prints nothing

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.base is None:
            self.base, self.start = done, now
        if (done < total and now - self.last < self.every_s) or (done >= total and self.ended):
            return
        self.last, self.ended = now, done >= total
        self.emit(self.line(done, total, now - self.start))

    def line(self, done: int, total: int, elapsed: float) -> str:
        """`embedding: 1,200/5,000 (24%), 61.3/s, 1m02s left`."""
        if total and done >= total and done == (self.base or 0):
            return f"{self.what}: {done:,}/{total:,} (100%), all reused from an earlier run, nothing new to process"
        rate = (done - (self.base or 0)) / elapsed if elapsed > 0 else 0.0
        left = (total - done) / rate if rate > 0 else None  # no rate yet: no estimate
        pct = 100.0 * done / total if total else 100.0
        eta = "done" if done >= total else (f"{_duration(left)} left" if left is not None else "? left")
        return f"{self.what}: {done:,}/{total:,} ({pct:.0f}%), {rate:,.1f}/s, {eta}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
