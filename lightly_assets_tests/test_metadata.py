"""Metadata as the UI shows it: tables where there are rows, no bookkeeping inside a data cell."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lightly_assets.defs.metadata import count_table, csv_preview


def test_counts_are_a_table_in_key_order() -> None:
    table = count_table(pd.Series(["video", "image", "image"]), "kind", "files").value
    assert [c.name for c in table.schema.columns] == ["kind", "files"]
    assert [r.data for r in table.records] == [{"kind": "image", "files": 2}, {"kind": "video", "files": 1}]
    frames = count_table({"b.mp4": 3, "a.mp4": 5}, "video", "frames").value
    assert [r.data for r in frames.records] == [{"video": "b.mp4", "frames": 3}, {"video": "a.mp4", "frames": 5}]


def test_the_csv_preview_holds_only_data_rows() -> None:
    names = [f"s{i}.png" for i in range(94)]
    table = csv_preview(names, np.ones((94, 32), dtype=np.float32), np.zeros(94, dtype=int)).value
    assert [r.data["filenames"] for r in table.records] == names[:8]  # the row count is the `rows` fact
    assert all(r.data["labels"] == 0 and r.data["embedding_3"] == 1.0 for r in table.records)
