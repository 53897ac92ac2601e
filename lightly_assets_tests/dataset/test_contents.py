"""Files' sha256: the same in worker processes as in threads and as hashlib over the whole file."""

from __future__ import annotations

import hashlib
from pathlib import Path

from lightly_assets import workers
from lightly_assets.dataset import contents


def test_hashes_in_processes_match_threads_and_hashlib(tmp_path: Path, monkeypatch) -> None:
    blobs = [bytes(range(i % 256)) * (i + 1) for i in range(7)] + [b"", b"x" * 5000]
    paths = []
    for i, blob in enumerate(blobs):
        (tmp_path / f"{i}.bin").write_bytes(blob)
        paths.append(str(tmp_path / f"{i}.bin"))
    expected = [hashlib.sha256(blob).hexdigest() for blob in blobs]
    monkeypatch.setattr(contents, "BLOCK", 1024)  # files longer than a block are read in several
    assert contents.file_sha256s(paths) == expected  # few files: threads
    monkeypatch.setattr(contents, "PROCESSES_FROM", 2)
    monkeypatch.setattr(contents, "PER_TASK", 3)
    monkeypatch.setattr(workers, "usable_cores", lambda: 2)
    assert contents.file_sha256s(paths) == expected  # worker processes, tasks of 3 (BLOCK as imported there)


def test_read_ahead_asks_for_the_files_in_order_within_its_budget(tmp_path: Path, monkeypatch) -> None:
    for name, size in (("a", 10), ("b", 30), ("c", 50)):
        (tmp_path / name).write_bytes(b"x" * size)
    asked: list[int] = []
    monkeypatch.setattr(contents.os, "posix_fadvise", lambda fd, offset, length, advice: asked.append(advice))
    paths = [str(tmp_path / n) for n in ("a", "gone", "b", "c")]
    contents.read_ahead(paths, budget=45)  # a and b fit, c would pass the budget; a missing file is skipped
    assert asked == [contents.os.POSIX_FADV_WILLNEED] * 2
    asked.clear()
    contents.read_ahead(paths[:1])  # one file: nothing to overlap
    assert asked == []
