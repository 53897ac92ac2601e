"""The one file lock: exclusive between holders, a bounded wait when asked, released when the block ends."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lightly_assets.locks import LockTimeout, exclusive


def test_a_held_lock_makes_a_bounded_waiter_give_up_then_is_free_again(tmp_path: Path) -> None:
    lock = tmp_path / "sub" / "x.lock"  # the folder is created
    with exclusive(lock):
        start = time.monotonic()
        with pytest.raises(LockTimeout, match=r"x\.lock held by another process for more than 0\.2 s"):
            with exclusive(lock, timeout_s=0.2):
                pass
        assert 0.2 <= time.monotonic() - start < 2
    with exclusive(lock, timeout_s=0.2):  # released when the first block ended
        pass


def test_an_error_in_the_block_releases_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "y.lock"
    with pytest.raises(KeyError):
        with exclusive(lock):
            raise KeyError("inside")
    with exclusive(lock, timeout_s=0.1):
        pass
