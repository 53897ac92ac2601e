"""Files' sha256: the same in worker processes as in threads and as hashlib over the whole file."""

from __future__ import annotations

import hashlib
from pathlib import Path

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
    monkeypatch.setattr(contents, "usable_cores", lambda: 2)
    assert contents.file_sha256s(paths) == expected  # worker processes, tasks of 3 (BLOCK as imported there)
