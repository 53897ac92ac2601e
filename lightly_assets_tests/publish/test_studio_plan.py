"""The upload plan's paths: what LightlyStudio stores for each sample, without a Path per row."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightly_assets.publish.studio.plan import absolute_paths

ODD = ["a.jpg", "cats/a b.jpg", "./a.jpg", "a/./b.jpg", "a//b.jpg", "a/", "a/..", "../up.jpg", ".", ".hidden/x.png",
       "é/ü.png", "a\\b.jpg", "/abs/x.jpg", "a/.", "", "...", "a/.b/c"]  # fmt: skip


@pytest.mark.parametrize("root", [Path("/data/ds"), Path("/data/ds/"), Path("/")])
def test_paths_are_what_path_joins_give(root: Path) -> None:
    assert absolute_paths(root, ODD) == [(root / s).as_posix() for s in ODD]
