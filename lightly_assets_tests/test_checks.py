"""The check functions judge real values: each passes on good input and fails, with a reason, on bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
from dagster import AssetCheckSeverity

from lightly_assets.dataset.scan import Skipped
from lightly_assets.defs import checks


def _samples(rows: list[tuple[str, str, str, int | None, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["filename", "source", "kind", "frame", "label"]).astype({"frame": "Int64"})


FILES = pd.DataFrame({"filename": ["a.jpg", "v.mp4"], "kind": ["image", "video"], "label": [1, 0]})
GOOD = _samples([("a.jpg", "a.jpg", "image", None, 1), ("v-0-mp4.png", "v.mp4", "video", 0, 0),
                 ("v-1-mp4.png", "v.mp4", "video", 1, 0)])  # fmt: skip


def test_samples_match_files() -> None:
    assert checks.samples_match_files(FILES, GOOD, []).passed
    missing_frame = GOOD.drop(index=1)
    result = checks.samples_match_files(FILES, missing_frame, [])
    assert not result.passed and "v.mp4: frames are not 0..0" in result.metadata["problems"].value
    dropped_video = GOOD.iloc[:1]
    assert not checks.samples_match_files(FILES, dropped_video, []).passed
    assert checks.samples_match_files(FILES, dropped_video, [Skipped("v.mp4", "corrupt")]).passed


def test_label_counts_account_for_unreadable_samples() -> None:
    assert checks.label_counts(np.array([1, 0, 0]), GOOD, []).passed
    assert not checks.label_counts(np.array([1, 0]), GOOD, []).passed
    assert checks.label_counts(np.array([1, 0]), GOOD, ["v-1-mp4.png"]).passed
    assert not checks.label_counts(np.array([1, 1, 0]), GOOD, []).passed


def test_finite_values_names_the_bad_samples() -> None:
    matrix = np.ones((3, 2), dtype=np.float32)
    assert checks.finite_values(matrix, ["a", "b", "c"]).passed
    matrix[1, 0] = np.nan
    matrix[2, 1] = np.inf
    result = checks.finite_values(matrix, ["a", "b", "c"])
    assert not result.passed and result.metadata["samples"].value == "b, c"


def test_warnings_are_warnings_and_blocking_specs_are_blocking() -> None:
    result = checks.no_skipped_files([Skipped("x.txt", "unsupported file type")])
    assert not result.passed and result.severity == AssetCheckSeverity.WARN
    assert "x.txt (unsupported file type)" in result.metadata["paths"].value
    assert not checks.trained_weights(True, "random").passed
    offline = checks.trained_weights(True, "random", "pretrained download failed: http://mirror/x.pth: timed out")
    assert offline.description.startswith("Warning, the run went on: Offline: Lightly's pretrained weights could not")
    assert "http://mirror/x.pth: timed out" in offline.description
    assert "LIGHTLY_ASSETS_CHECKPOINT" in offline.description
    placed = checks.trained_weights(True, "random", "pretrained download failed: x", "/hub/checkpoints/r.pth")
    assert "put the pretrained file at /hub/checkpoints/r.pth" in placed.description
    assert checks.trained_weights(False, "pretrained").passed
    assert {s.name for s in checks.EMBEDDINGS if not s.blocking} >= {"trained_weights", "knn_better_than_chance"}
    blocking = {s.name for group in (checks.FRAME_INDEX, checks.EMBEDDINGS, checks.EMBEDDINGS_CSV, checks.UPLOADED)
                for s in group if s.blocking}  # fmt: skip
    assert blocking == {"samples_match_files", "finite_values", "column_order", "label_counts",
                        "target_counts_match_csv"}  # fmt: skip


def test_target_counts() -> None:
    assert checks.target_counts_match_csv(5, 5, 5).passed
    assert not checks.target_counts_match_csv(5, 4, 5).passed


def test_a_warning_says_first_that_the_run_went_on() -> None:
    """Dagster labels a failed WARN check "Failed": its own text says it was a warning and the run went on."""
    warnings = [
        checks.no_skipped_files([Skipped("x.txt", "unsupported file type")]),
        checks.all_samples_embedded([("b", "broken")], 3),
        checks.trained_weights(True, "lightly resnet-18", "pretrained download failed: offline"),
        checks.no_duplicates(2, {"exact": 1, "near": 2}, 0.95),
        checks.no_data_issues({"blurry": 2, "dark": 0}, 2),
        checks.similarities_meaningful("Similarities too uniform to mean anything: random pairs reach 0.95"),
    ]
    for result in warnings:
        assert not result.passed and result.severity == AssetCheckSeverity.WARN
        assert result.description.startswith("Warning, the run went on"), result.description
    assert warnings[-1].description.startswith("Warning, the run went on: similarities too uniform")


def test_a_passing_check_has_no_empty_rows() -> None:
    """Lists of what went wrong appear only when something did."""
    passing = [
        checks.no_skipped_files([]),
        checks.all_samples_embedded([], 3),
        checks.no_duplicates_selected(["a", "b"], pd.DataFrame({"filenames": ["a", "c"], "group": [0, 0]})),
    ]
    for result in passing:
        assert result.passed
        empty = [k for k, v in result.metadata.items() if v.value in ("", [], {})]
        assert not empty, (result.check_name, empty)
        assert not {"paths", "which", "groups_selected_twice"} & set(result.metadata), result.metadata
    assert "samples" not in checks.finite_values(np.ones((2, 2)), ["a", "b"]).metadata  # no bad rows to name
    twice = checks.no_duplicates_selected(["a", "c"], pd.DataFrame({"filenames": ["a", "c"], "group": [0, 0]}))
    assert not twice.passed and twice.metadata["groups_selected_twice"].value == "0"
