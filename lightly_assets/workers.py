"""Many small tasks in worker processes: spawned, never forked (the run's process has threads: Dagster's, the
network's), results in the tasks' order, and where the processes cannot start, the rest in threads.

For work that holds the GIL per item (Pillow parsing headers, small numpy calls): threads do not scale there,
processes do. A spawned worker costs a new interpreter and its imports, so callers use them from thousands of
items on.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

Task = TypeVar("Task")
Result = TypeVar("Result")
log = logging.getLogger(__name__)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's CPU set)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def results_in_workers(
    fn: Callable[[Task], Result], tasks: Sequence[Task], processes: int, threads: int, what: str
) -> Iterator[Result]:
    """`fn` of each task, in order: in `processes` spawned processes (`fn` and the tasks picklable), or in
    `threads` threads when `processes` is 1 or the processes fail to start (e.g. a script without
    `if __name__ == "__main__":` started us), from the first task not yet done."""
    done = 0
    if processes > 1 and len(tasks) > 1:
        try:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(processes, len(tasks)), mp_context=context) as pool:
                for result in pool.map(fn, tasks):
                    done += 1
                    yield result
            return
        except BrokenProcessPool as exc:
            log.warning("%s: worker processes failed (%s); the rest is done in threads", what, exc)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        yield from pool.map(fn, tasks[done:])


def each_in_workers(
    fn: Callable[[list[Task]], list[Result]],
    items: Sequence[Task],
    what: str,
    processes_from: int,
    per_task: int,
    max_processes: int,
) -> list[Result]:
    """`fn` over the items in tasks of `per_task`, its results in the items' order: from `processes_from` items on
    in worker processes, else in threads; two of either per core, so that reads of files not in the page cache
    overlap (for work on many files: their headers, their bytes)."""
    cores = usable_cores()
    tasks = [list(items[start : start + per_task]) for start in range(0, len(items), per_task)]
    processes = min(max_processes, 2 * cores) if len(items) >= processes_from and cores > 1 else 1
    return [result for chunk in results_in_workers(fn, tasks, processes, min(8, 2 * cores), what) for result in chunk]
