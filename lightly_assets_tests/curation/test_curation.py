"""Curation's domain package: duplicate groups, thresholds, selection, and the versioned tag names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lightly_assets.curation import CurationError
from lightly_assets.curation.duplicates import (
    COLUMNS,
    Hashes,
    content_keys,
    find_duplicates,
    read_duplicates_csv,
    unit_rows,
    vector_digests,
    write_duplicates_csv,
)
from lightly_assets.curation.duplicates_state import State
from lightly_assets.curation.selection import (
    candidates,
    coverage_radius,
    random_rows,
    requested_count,
    select,
)
from lightly_assets.curation.stats import compute_stats
from lightly_assets.curation.thresholds import (
    FALLBACK_SIMILARITY,
    check_similarity,
    default_similarity,
    uniformity_warning,
)
from lightly_assets.publish.studio.tags import versioned
from lightly_assets_tests.media import make_image


def planted(n: int = 300, dim: int = 24, seed: int = 0) -> tuple[list[str], np.ndarray, list[str]]:
    """Spread-out vectors with two planted groups: {3, 10 (bit-identical), 11 (near)} and {40, 50 (near)}."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x[10] = x[3]
    x[11] = x[3] + 0.01 * rng.normal(size=dim)
    x[50] = x[40] + 0.02 * rng.normal(size=dim)
    names = [f"img/{i:04d}.png" for i in range(n)]
    keys = [f"file:{i}" for i in range(n)]
    keys[10] = keys[3]  # the same file content
    return names, x, keys


def test_groups_are_connected_components_with_kind_and_similarity_to_the_first_member() -> None:
    names, x, keys = planted()
    found = find_duplicates(names, x, keys, similarity=0.99)
    table = found.table
    assert list(table.columns[:4]) == COLUMNS
    assert table["filenames"].tolist() == [names[i] for i in (3, 10, 11, 40, 50)]
    assert table["group"].tolist() == [0, 0, 0, 1, 1]
    assert table["kind"].tolist() == ["exact", "exact", "near", "near", "near"]
    assert table["similarity"].iloc[0] == 1.0 and table["similarity"].iloc[1] == 1.0
    assert 0.99 <= table["similarity"].iloc[2] < 1.0
    assert found.counts() == {"exact": 1, "near": 2, "visual": 0} and found.groups == 2
    assert found.group_of()[[3, 10, 11, 40, 50, 0]].tolist() == [0, 0, 0, 1, 1, -1]


def test_a_chain_of_near_duplicates_is_one_group() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(size=(50, 16)).astype(np.float32)
    step = rng.normal(size=16).astype(np.float32) * 0.05
    base[20], base[21] = base[7] + step, base[7] + 2 * step  # 7~20, 20~21, but 7 and 21 further apart
    names, keys = [str(i) for i in range(50)], [str(i) for i in range(50)]
    unit = unit_rows(base)
    sim_7_21 = float(unit[7] @ unit[21])
    threshold = min(float(unit[7] @ unit[20]), float(unit[20] @ unit[21])) - 1e-4
    assert sim_7_21 < threshold
    table = find_duplicates(names, base, keys, threshold).table
    assert table["filenames"].tolist() == ["7", "20", "21"] and table["group"].nunique() == 1


def test_no_groups_and_one_sample_give_empty_tables(tmp_path: Path) -> None:
    names, x, keys = planted(n=60)
    assert find_duplicates(names[:1], x[:1], keys[:1], 0.9).table.empty
    assert find_duplicates([], x[:0], [], 0.9).table.empty
    path = write_duplicates_csv(tmp_path / "duplicates.csv", find_duplicates(names[:1], x[:1], keys[:1], 0.9).table)
    assert path.read_text() == "filenames,group,kind,similarity\n"
    assert read_duplicates_csv(path).empty


def test_csv_round_trip(tmp_path: Path) -> None:
    names, x, keys = planted()
    table = find_duplicates(names, x, keys, 0.99).table
    back = read_duplicates_csv(write_duplicates_csv(tmp_path / "d.csv", table))
    assert back["filenames"].tolist() == table["filenames"].tolist()
    assert back["kind"].tolist() == table["kind"].tolist()


def test_new_samples_are_searched_against_the_existing_ones_only(tmp_path: Path) -> None:
    names, x, keys = planted(n=300)
    first = find_duplicates(names[:200], x[:200], keys[:200], 0.99, model="m")
    first.state.save(tmp_path / "state.npz")
    state = State.load(tmp_path / "state.npz")
    x = x.copy()
    x[250] = x[120] + 0.01  # a new sample near an old one
    again = find_duplicates(names, x, keys, 0.99, model="m", state=state)
    full = find_duplicates(names, x, keys, 0.99, model="m")
    assert again.searched == 100 and full.searched == 300
    pd.testing.assert_frame_equal(again.table, full.table)
    assert names[250] in again.table["filenames"].tolist()


def test_the_state_is_not_reused_for_another_model_or_a_lower_threshold() -> None:
    names, x, keys = planted(n=100)
    state = find_duplicates(names, x, keys, 0.99, model="m").state
    assert find_duplicates(names, x, keys, 0.99, model="m", state=state).searched == 0
    assert find_duplicates(names, x, keys, 0.99, model="other", state=state).searched == 100
    assert find_duplicates(names, x, keys, 0.98, model="m", state=state).searched == 100
    changed = x.copy()
    changed[5] += 1.0
    assert find_duplicates(names, changed, keys, 0.99, model="m", state=state).searched == 1


def test_the_approximate_index_finds_the_planted_groups() -> None:
    names, x, keys = planted(n=2000, dim=32)
    exact = find_duplicates(names, x, keys, 0.99)
    approx = find_duplicates(names, x, keys, 0.99, exact_limit=500)
    assert "approximate" in approx.method and "exact" in exact.method
    pd.testing.assert_frame_equal(approx.table, exact.table)


def test_exact_copies_by_file_content_and_frames_by_identical_vectors(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", seed=1)
    make_image(tmp_path / "b.png", seed=2)
    (tmp_path / "copy.png").write_bytes((tmp_path / "a.png").read_bytes())
    rows = [("a.png", "image"), ("b.png", "image"), ("copy.png", "image"), ("v.mp4", "video"), ("v.mp4", "video")]
    samples = pd.DataFrame(
        {
            "filename": ["a.png", "b.png", "copy.png", "v-0-mp4.png", "v-1-mp4.png"],
            "source": [r[0] for r in rows],
            "kind": [r[1] for r in rows],
            "size": [1, 1, 1, 1, 1],
            "mtime_ns": [1, 2, 3, 4, 4],
        }
    )
    unit = unit_rows(np.random.default_rng(0).normal(size=(5, 8)))
    unit[4] = unit[3]  # a static scene: identical frames give bit-identical vectors
    keys, hashes = content_keys(samples, tmp_path, vector_digests(unit))
    assert keys[0] == keys[2] != keys[1] and keys[3] == keys[4] and keys[3].startswith("frame:")
    assert len(hashes) == 3
    (tmp_path / "a.png").unlink()  # a known (source, size, mtime) is not read again
    assert content_keys(samples, tmp_path, vector_digests(unit), hashes)[0] == keys
    table = find_duplicates(samples["filename"].tolist(), unit, keys, 1.0).table
    assert table["filenames"].tolist() == ["a.png", "copy.png", "v-0-mp4.png", "v-1-mp4.png"]
    assert set(table["kind"]) == {"exact"}


def test_only_files_of_one_byte_size_are_read_for_exact_copies(tmp_path: Path) -> None:
    make_image(tmp_path / "a.png", seed=1)
    (tmp_path / "copy.png").write_bytes((tmp_path / "a.png").read_bytes())
    (tmp_path / "same-size.png").write_bytes(bytes(reversed((tmp_path / "a.png").read_bytes())))
    names = ["a.png", "copy.png", "same-size.png", "other.png"]  # other.png is never read: it does not exist
    samples = pd.DataFrame(
        {
            "filename": names,
            "source": names,
            "kind": ["image"] * 4,
            "size": [(tmp_path / "a.png").stat().st_size] * 3 + [12],
            "mtime_ns": [1, 2, 3, 4],
        }
    )
    keys, hashes = content_keys(samples, tmp_path, vector_digests(unit_rows(np.eye(4))))
    assert keys[0] == keys[1] != keys[2] and keys[3] == "only:other.png"
    assert hashes["source"].tolist() == names[:3] and keys[2] == "file:" + hashes["sha256"].iat[2]
    table = find_duplicates(names, np.eye(4), keys, 1.0).table
    assert table["filenames"].tolist() == ["a.png", "copy.png"] and set(table["kind"]) == {"exact"}


def test_files_of_one_size_that_look_different_are_not_read_for_exact_copies(tmp_path: Path) -> None:
    names = ["a.bmp", "b.bmp", "copy.bmp", "flat.bmp", "flat-copy.bmp"]  # BMPs of one size: one byte size
    for name, seed in zip(names[:2], (1, 2), strict=True):
        make_image(tmp_path / name, seed=seed)
    make_image(tmp_path / "flat.bmp", fill=(9, 9, 9))
    for copy, original in (("copy.bmp", "a.bmp"), ("flat-copy.bmp", "flat.bmp")):
        (tmp_path / copy).write_bytes((tmp_path / original).read_bytes())
    files = [tmp_path / name for name in names]
    samples = pd.DataFrame({"filename": names, "source": names, "kind": "image",
                            "size": [f.stat().st_size for f in files], "mtime_ns": 1})  # fmt: skip
    stats = compute_stats(samples, tmp_path)
    valid = np.isfinite(stats["sharpness"].to_numpy())  # the flat ones have no usable hash: compared by size
    values = np.frombuffer(b"".join(stats["hash"]), dtype=np.uint8).reshape(-1, 8)
    keys, hashed = content_keys(samples, tmp_path, [""] * 5, None, Hashes(values, valid, [""] * 5, 10))
    assert keys[0] == keys[2] != keys[3] == keys[4] and keys[1] == "only:b.bmp"  # b.bmp is not read
    assert hashed["source"].tolist() == ["a.bmp", "copy.bmp", "flat.bmp", "flat-copy.bmp"]
    assert content_keys(samples, tmp_path, [""] * 5)[1]["source"].tolist() == names  # by size alone: all read


def test_default_similarity_per_model_setting() -> None:
    assert default_similarity("lightly") == default_similarity(None)
    assert default_similarity("torchvision:resnet50") == 0.85
    assert default_similarity("timm:convnext_tiny") == 0.85
    assert default_similarity("something-new") == FALLBACK_SIMILARITY


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.01, 2.0])
def test_similarity_outside_zero_one_is_a_one_line_error(bad: float) -> None:
    with pytest.raises(CurationError, match=r"similarity must be in \(0, 1\]") as error:
        check_similarity(bad)
    assert "\n" not in str(error.value)
    assert check_similarity(1.0) == 1.0


def test_uniform_similarities_are_said_to_mean_nothing() -> None:
    rng = np.random.default_rng(0)
    spread = unit_rows(rng.normal(size=(500, 32)))
    concentrated = unit_rows(rng.normal(size=(500, 32)) * 0.05 + 1.0)  # every vector near (1, 1, ..., 1)
    assert uniformity_warning(spread, 0.9, random_weights=False) is None
    assert "too uniform" in uniformity_warning(concentrated, 0.9, random_weights=False)
    assert "weights are random" in uniformity_warning(spread, 0.9, random_weights=True)


def clustered(n_per: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 16)) * 4
    x = np.concatenate([c + rng.normal(size=(n_per * (i + 1), 16)) for i, c in enumerate(centres)])
    labels = np.concatenate([np.full(n_per * (i + 1), i) for i in range(5)])
    return x.astype(np.float32), labels


def test_diverse_selection_is_deterministic_and_covers_better_than_random() -> None:
    x, labels = clustered()
    none = np.full(len(x), -1)
    a = select(x, labels, none, 20, "diverse")
    b = select(x, labels, none, 20, "diverse")
    assert np.array_equal(a.rows, b.rows) and len(a.rows) == 20 and np.all(np.diff(a.rows) > 0)
    assert coverage_radius(x, a.rows) < coverage_radius(x, random_rows(candidates(none), 20))
    assert set(labels[a.rows]) == set(range(5))  # every cluster is reached


def test_never_two_members_of_one_duplicate_group() -> None:
    x, labels = clustered()
    group_of = np.full(len(x), -1)
    group_of[[5, 6, 7]] = 0
    group_of[[100, 300]] = 1
    chosen = select(x, labels, group_of, len(x), "diverse")
    assert len(chosen.rows) == len(x) - 3
    assert {5, 100} <= set(chosen.rows.tolist()) and not {6, 7, 300} & set(chosen.rows.tolist())
    assert any("above" in note for note in chosen.notes) and any("duplicates left out" in n for n in chosen.notes)
    for strategy in ("diverse", "typicality", "balance"):
        rows = set(select(x, labels, group_of, 50, strategy).rows.tolist())
        assert len(rows & {5, 6, 7}) <= 1 and len(rows & {100, 300}) <= 1


def test_balance_evens_out_the_weak_labels_and_typicality_prefers_dense_regions() -> None:
    x, labels = clustered()  # label i has 60 * (i + 1) samples
    rows = select(x, labels, np.full(len(x), -1), 25, "balance").rows
    assert np.bincount(labels[rows], minlength=5).tolist() == [5, 5, 5, 5, 5]
    typical = select(x, labels, np.full(len(x), -1), 10, "typicality").rows
    diverse = select(x, labels, np.full(len(x), -1), 10, "diverse").rows
    assert coverage_radius(x, typical) > coverage_radius(x, diverse)


def test_requested_count_and_bad_config() -> None:
    assert requested_count(105, None, None) == 10  # a tenth by default, rounded down
    assert requested_count(1, None, None) == 1 and requested_count(8, None, None) == 1  # never 0 of some
    assert requested_count(0, None, None) == 0 and requested_count(8, None, 0.0) == 0
    assert requested_count(100, None, 0.25) == 25 and requested_count(100, 7, None) == 7
    for args, message in [((-1, None), "n_samples must be 0 or more"), ((None, 1.5), "proportion must be in")]:
        with pytest.raises(CurationError, match=message):
            requested_count(100, *args)
    with pytest.raises(CurationError, match="not both"):
        requested_count(100, 5, 0.5)
    with pytest.raises(CurationError, match="strategy must be one of"):
        select(np.zeros((3, 2)), [0, 0, 0], np.full(3, -1), 1, "random")


def test_tag_names_are_versioned() -> None:
    assert versioned("duplicates", []) == (None, "duplicates-v1")
    assert versioned("duplicates", ["cats", "duplicates-v1", "duplicates-v3", "duplicates-vx"]) == (
        "duplicates-v3",
        "duplicates-v4",
    )
    assert versioned("selection-diverse", ["selection-diverse-extra-v9"]) == (None, "selection-diverse-v1")
