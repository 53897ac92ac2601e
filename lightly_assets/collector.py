"""Python's cycle collector while the command starts.

Importing Dagster, pandas and the definitions, opening the instance and creating a run make some 400,000 objects
that live as long as the process (about a thousand of them are cyclic garbage after the imports). With the collector
on, each full collection walks all of them again: 0.3-0.6 s of the ~2.5 s from process start to the first batch. So
the command pauses the collector while it starts. When its run starts, what start-up made is frozen (`gc.freeze`:
kept out of every later collection, as servers do before they fork) and the collector runs again, so a long run
still frees its cycles.
"""

from __future__ import annotations

import gc

_state = {"paused": False}


def pause() -> None:
    """Stop collecting cycles until `resume` (a no-op where the collector is already off)."""
    if gc.isenabled():
        gc.disable()
        _state["paused"] = True


def resume() -> None:
    """Freeze what exists now and collect again; only undoes `pause`, so a library caller's settings stay."""
    if _state["paused"]:
        _state["paused"] = False
        gc.freeze()
        gc.enable()
