"""Samples matched between runs by their key columns: exactly, whatever dtypes the tables hold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lightly_assets.dataset import keys as keys_module
from lightly_assets.dataset.keys import KEY_COLUMNS, joined_text, matching_rows, same_names, split_text

KNOWN = pd.DataFrame(
    [
        ("a.jpg", 10, 1, "a.jpg"),
        ("b.jpg", 20, 2, "b.jpg"),
        ("v.mp4", 99, 3, "v-000-mp4.png"),
        ("é ü.png", 5, 4, "é ü.png"),
    ],
    columns=KEY_COLUMNS,
)


def test_rows_match_on_all_four_columns_whatever_their_dtypes() -> None:
    wanted = KNOWN.iloc[[3, 0, 2]].astype({"size": np.int32, "mtime_ns": np.uint64})  # another order, other dtypes
    wanted = pd.concat([wanted, pd.DataFrame([("a.jpg", 10, 2, "a.jpg")], columns=KEY_COLUMNS)], ignore_index=True)
    assert matching_rows(KNOWN, wanted).tolist() == [3, 0, 2, -1]
    assert matching_rows(KNOWN.iloc[:0], wanted).tolist() == [-1, -1, -1, -1]


def test_a_hash_collision_is_a_miss_never_another_sample(monkeypatch) -> None:
    monkeypatch.setattr(keys_module, "_hashes", lambda keys: np.zeros(len(keys), dtype=np.uint64))
    assert matching_rows(KNOWN, KNOWN).tolist() == [0, -1, -1, -1]


def test_text_columns_read_back_even_with_a_nul_inside_a_value() -> None:
    values = np.array(["a.jpg", "é ü.png", "", "cannot decode: bad\0byte"], dtype=object)
    assert split_text(joined_text(values), 4) == ["a.jpg", "é ü.png", "", "cannot decode: bad byte"]
    assert split_text(joined_text(np.array([], dtype=object)), 0) == []


def test_same_names_is_true_only_for_the_same_names_in_the_same_order() -> None:
    names = [f"img-{i:05d}.jpg" for i in range(1000)]
    assert same_names(names, [str(n) for n in names]) and same_names(pd.Series(names), names)
    assert not same_names(names, names[::-1]) and not same_names(names, names[:-1]) and same_names([], [])
