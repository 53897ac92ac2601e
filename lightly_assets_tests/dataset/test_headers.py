"""Image sizes from headers: the same in worker processes as in threads, None for what Pillow cannot open."""

from __future__ import annotations

from pathlib import Path

from lightly_assets import workers
from lightly_assets.dataset import headers
from lightly_assets_tests.media import exif_rotated_jpeg, make_image


def test_sizes_in_processes_match_threads_and_the_files(tmp_path: Path, monkeypatch) -> None:
    paths = [make_image(tmp_path / f"{i}.jpg", seed=i, size=(40 + i, 30)) for i in range(5)]
    paths.append(make_image(tmp_path / "p.png", seed=9, size=(17, 23)))
    paths.append(exif_rotated_jpeg(tmp_path / "turned.jpg", 6, size=(48, 32)))  # the header's size, as stored
    (tmp_path / "bad.jpg").write_bytes(b"not a picture")
    names = [str(p) for p in [*paths, tmp_path / "bad.jpg", tmp_path / "gone.jpg"]]
    expected = [(40 + i, 30) for i in range(5)] + [(17, 23), (48, 32), None, None]
    assert headers.image_sizes(names) == expected  # few files: threads
    monkeypatch.setattr(headers, "PROCESSES_FROM", 2)
    monkeypatch.setattr(headers, "PER_TASK", 3)
    monkeypatch.setattr(workers, "usable_cores", lambda: 2)
    assert headers.image_sizes(names) == expected  # worker processes, tasks of 3
