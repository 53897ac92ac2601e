"""The dataset sensor's pure planning function, table-driven: which folders are new, changed, removed or still
being copied, which partitions to add or delete, and what each tick says."""

from __future__ import annotations

import pytest

from lightly_assets.defs.sensors import Seen, pending, plan_tick, skip_reason

# ------------------------------------------------------------------ the planning function, as data


# (case, previous state, found now, materialized on the instance, runs requested, waiting, up to date, new state)
PLANS = [
    (
        "new folder waits one tick (first seen, not 'changed')",
        {},
        {"a": "f1"},
        {},
        {},
        [],
        [],
        {"a": Seen("f1", None, 0)},
    ),
    (
        "new to the sensor but materialized with these files (a CLI run): up to date at once",
        {},
        {"a": "f1"},
        {"a": "f1"},
        {},
        [],
        ["a"],
        {"a": Seen("f1", "f1", 0)},
    ),
    ("stable folder runs", {"a": Seen("f1")}, {"a": "f1"}, {}, {"a": "f1:1"}, [], [], {"a": Seen("f1", "f1", 1)}),
    (
        "already requested: nothing (also after a failed run)",
        {"a": Seen("f1", "f1", 1)},
        {"a": "f1"},
        {},
        {},
        [],
        [],
        {"a": Seen("f1", "f1", 1)},
    ),
    (
        "changed folder waits, keeping what was requested",
        {"a": Seen("f1", "f1", 1)},
        {"a": "f2"},
        {},
        {},
        ["a"],
        [],
        {"a": Seen("f2", "f1", 1)},
    ),
    (
        "changed then stable: runs again with the next number",
        {"a": Seen("f2", "f1", 1)},
        {"a": "f2"},
        {},
        {"a": "f2:2"},
        [],
        [],
        {"a": Seen("f2", "f2", 2)},
    ),
    (
        "materialized with this fingerprint by the CLI or the UI: no run",
        {"a": Seen("f1")},
        {"a": "f1"},
        {"a": "f1"},
        {},
        [],
        ["a"],
        {"a": Seen("f1", "f1", 0)},
    ),
    (
        "materialized with an older fingerprint: runs",
        {"a": Seen("f2", "f1", 1)},
        {"a": "f2"},
        {"a": "f1"},
        {"a": "f2:2"},
        [],
        [],
        {"a": Seen("f2", "f2", 2)},
    ),
    (
        "never completed (None): runs",
        {"a": Seen("f1")},
        {"a": "f1"},
        {"a": None},
        {"a": "f1:1"},
        [],
        [],
        {"a": Seen("f1", "f1", 1)},
    ),
    (
        "back to an earlier state after a change: a new run key",
        {"a": Seen("f1", "f2", 2)},
        {"a": "f1"},
        {},
        {"a": "f1:3"},
        [],
        [],
        {"a": Seen("f1", "f1", 3)},
    ),
    ("removed folder is forgotten", {"a": Seen("f1", "f1", 1)}, {}, {}, {}, [], [], {}),
]


@pytest.mark.parametrize(
    ("state", "found", "materialized", "run", "waiting", "up_to_date", "new_state"),
    [p[1:] for p in PLANS],
    ids=[p[0] for p in PLANS],
)
def test_plan_tick(state, found, materialized, run, waiting, up_to_date, new_state) -> None:
    plan = plan_tick(state, found, set(found), frozenset(), materialized)
    assert (plan.run, plan.waiting, plan.up_to_date, plan.state) == (run, waiting, up_to_date, new_state)


# (case, partitions known to the instance, folders found, invalid folder names, add, delete)
PARTITIONS = [
    ("new folder becomes a partition", set(), {"a": "f"}, frozenset(), ["a"], []),
    ("partition without a folder is deleted", {"a", "cli"}, {"a": "f"}, frozenset(), [], ["cli"]),
    ("a folder with a bad name is neither added nor deleted", {"a"}, {"a": "f"}, frozenset({"x,y"}), [], []),
]


@pytest.mark.parametrize(
    ("known", "found", "invalid", "add", "delete"), [p[1:] for p in PARTITIONS], ids=[p[0] for p in PARTITIONS]
)
def test_plan_tick_partitions(known, found, invalid, add, delete) -> None:
    plan = plan_tick({}, found, known, invalid)
    assert (plan.add, plan.delete) == (add, delete)
    assert plan.notes == [
        f"dataset folder '{n}' is gone: its partition is deleted; earlier outputs and uploads are kept" for n in delete
    ]


def test_a_new_folder_is_first_seen_and_only_a_changing_one_is_still_copying() -> None:
    first = plan_tick({}, {"a": "f1"}, {"a"})
    assert first.first_seen == ["a"] and first.waiting == []
    message = skip_reason(first, {"a": "f1"}, [], "data")
    assert message == "first seen: a (runs on the next tick if its files stay the same)"
    changed = plan_tick(first.state, {"a": "f2"}, {"a"})
    assert changed.first_seen == [] and changed.waiting == ["a"]
    assert "a changed since the last tick: waiting until unchanged (still copying?)" in skip_reason(
        changed, {"a": "f2"}, [], "data"
    )


def test_pending_lists_stable_unrequested_and_first_seen_folders() -> None:
    state = {"new": Seen("x"), "stable": Seen("f"), "done": Seen("f", "f", 1), "moving": Seen("f")}
    assert pending(state, {"new": "x", "stable": "f", "done": "f", "moving": "g", "unseen": "u"}) == [
        "new",
        "stable",
        "unseen",
    ]
