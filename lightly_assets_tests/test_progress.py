"""Progress lines: rate-limited, with count, rate and time left, and always a final line."""

from __future__ import annotations

from lightly_assets.progress import Progress


def test_progress_is_rate_limited_and_always_reports_the_end(monkeypatch) -> None:
    clock = iter([0.0, 0.0, 1.0, 2.0, 12.0, 13.0, 14.0])
    monkeypatch.setattr("lightly_assets.progress.time.perf_counter", lambda: next(clock))
    lines: list[str] = []
    progress = Progress("embedding", lines.append, every_s=5.0)
    progress(0, 100)  # t=0: the start
    progress(10, 100)  # t=1: too soon
    progress(20, 100)  # t=2: too soon
    progress(60, 100)  # t=12: reported
    progress(100, 100)  # t=13: the end is always reported
    progress(100, 100)  # t=14: once (the embedding step reports it after its last batch and again at its end)
    assert lines == ["embedding: 60/100 (60%), 5.0/s, 8s left", "embedding: 100/100 (100%), 7.7/s, done"]


def test_long_durations_read_as_hours_and_minutes() -> None:
    line = Progress("indexing videos", print).line(1_000, 100_000, 100.0)
    assert line == "indexing videos: 1,000/100,000 (1%), 10.0/s, 2h45m left"


def test_work_done_before_the_start_does_not_count_in_the_rate(monkeypatch) -> None:
    clock = iter([0.0, 0.0, 10.0])
    monkeypatch.setattr("lightly_assets.progress.time.perf_counter", lambda: next(clock))
    lines: list[str] = []
    progress = Progress("embedding", lines.append, every_s=5.0)
    progress(900, 1000)  # 900 vectors reused from the cache
    progress(950, 1000)
    assert lines == ["embedding: 950/1,000 (95%), 5.0/s, 10s left"]


def test_a_fully_cached_run_says_so_instead_of_a_rate(monkeypatch) -> None:
    clock = iter([0.0, 0.001])
    monkeypatch.setattr("lightly_assets.progress.time.perf_counter", lambda: next(clock))
    lines: list[str] = []
    Progress("embedding", lines.append)(5_000, 5_000)  # every vector came from the cache
    assert lines == ["embedding: 5,000/5,000 (100%), all reused from an earlier run, nothing new to process"]


def test_the_rate_counts_only_this_runs_work_to_the_end(monkeypatch) -> None:
    clock = iter([0.0, 0.0, 4.0])
    monkeypatch.setattr("lightly_assets.progress.time.perf_counter", lambda: next(clock))
    lines: list[str] = []
    progress = Progress("embedding", lines.append)
    progress(990, 1000)  # 990 reused
    progress(1000, 1000)  # 10 embedded in 4 s
    assert lines == ["embedding: 1,000/1,000 (100%), 2.5/s, done"]
