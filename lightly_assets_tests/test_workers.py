"""Tasks in spawned worker processes, in order, and in threads where the processes cannot start."""

from __future__ import annotations

import os

from lightly_assets import workers


def pid_and_square(n: int) -> tuple[int, int]:
    return os.getpid(), n * n


def test_results_come_in_the_tasks_order_from_other_processes() -> None:
    started = workers.multiprocessing.active_children()
    found = list(workers.results_in_workers(pid_and_square, list(range(20)), processes=2, threads=1, what="squares"))
    assert [square for _, square in found] == [n * n for n in range(20)]
    assert os.getpid() not in {pid for pid, _ in found}
    assert workers.multiprocessing.active_children() == started  # the workers are gone


def test_one_process_means_threads_of_this_process() -> None:
    found = list(workers.results_in_workers(pid_and_square, [1, 2, 3], processes=1, threads=2, what="squares"))
    assert found == [(os.getpid(), 1), (os.getpid(), 4), (os.getpid(), 9)]


def test_the_rest_is_done_in_threads_when_the_processes_break(monkeypatch) -> None:
    class BreaksAfterTwo(workers.ProcessPoolExecutor):
        def map(self, fn, tasks):  # two results, then what a worker that dies does to the caller
            yield from (fn(task) for task in list(tasks)[:2])
            raise workers.BrokenProcessPool("a child process terminated abruptly")

    monkeypatch.setattr(workers, "ProcessPoolExecutor", BreaksAfterTwo)
    warned: list[str] = []  # not caplog: an earlier test's package (LightlyStudio's) may reconfigure logging
    monkeypatch.setattr(workers.log, "warning", lambda message, *args: warned.append(message % args))
    found = list(workers.results_in_workers(pid_and_square, [1, 2, 3, 4], processes=2, threads=1, what="squares"))
    assert [square for _, square in found] == [1, 4, 9, 16]  # none repeated, none lost
    assert warned == [
        "squares: worker processes failed (a child process terminated abruptly); the rest is done in threads"
    ]
