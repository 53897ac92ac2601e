"""The visual pairs against distances compared by hand: each block of rows searched against the rows from it on
only (no pair lost or found twice across the blocks' edges), and the buckets of the parts' bits finding exactly
the pairs of comparing every pair, each once."""

from __future__ import annotations

import numpy as np
import pytest

from lightly_assets.curation import pair_search
from lightly_assets.curation.pair_search import hash_pairs, part_keys, parts_for, words
from lightly_assets.curation.phash import BITS, hamming
from lightly_assets_tests.hashes import clustered_hashes


def pairs_by_hand(values: np.ndarray, max_distance: int, valid: np.ndarray, asked: set[int]) -> list[tuple]:
    found = []
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            if valid[i] and valid[j] and (i in asked or j in asked):
                distance = int(hamming(values[i], values[j]))
                if distance <= max_distance:
                    found.append((i, j, distance))
    return found


def search(monkeypatch: pytest.MonkeyPatch, buckets: bool) -> None:
    """Small tables (blocks of 7 asked rows against 3 rows a table), and buckets always or never."""
    monkeypatch.setattr(pair_search, "PAIR_QUERIES", 7)
    monkeypatch.setattr(pair_search, "PAIR_TABLE", 21)
    monkeypatch.setattr(pair_search, "BUCKETS_FROM", 0 if buckets else 1 << 62)
    monkeypatch.setattr(pair_search, "BUCKET_SHARE", float("inf"))
    monkeypatch.setattr(pair_search, "BUCKET_ROWS", 4)


def as_list(pairs: np.ndarray, distances: np.ndarray) -> list[tuple]:
    return [(int(i), int(j), int(d)) for (i, j), d in zip(pairs.tolist(), distances.tolist(), strict=True)]


@pytest.mark.parametrize("buckets", [False, True])
@pytest.mark.parametrize("queries", [None, [3, 17, 18, 60, 61, 62]])
def test_every_pair_once_in_order_across_chunks(
    monkeypatch: pytest.MonkeyPatch, queries: list[int] | None, buckets: bool
) -> None:
    search(monkeypatch, buckets)
    values = clustered_hashes(80)
    valid = np.ones(len(values), dtype=bool)
    valid[[9, 17, 50]] = False
    asked = set(range(len(values))) if queries is None else set(queries)
    pairs, distances = hash_pairs(values, 8, valid=valid, queries=None if queries is None else np.array(queries))
    expected = pairs_by_hand(values, 8, valid, asked)
    assert len(expected) > 50  # (the clusters give pairs within and across chunks)
    assert as_list(pairs, distances) == expected


@pytest.mark.parametrize("max_distance", [0, 3, 10, 20])
def test_buckets_find_the_pairs_of_every_pair_each_once(monkeypatch: pytest.MonkeyPatch, max_distance: int) -> None:
    values = np.concatenate([clustered_hashes(300, seed=1, centres=6, flip=0.04), clustered_hashes(300, seed=2)])
    values[::7] = np.random.default_rng(3).integers(0, 256, (len(values[::7]), 8), dtype=np.uint8)  # distinct ones
    values[100:130] = values[400:430]  # equal ones
    valid = np.random.default_rng(4).random(len(values)) > 0.05
    videos = ["v.mp4" if i % 13 == 0 else "" for i in range(len(values))]
    for queries in (None, np.arange(0, len(values), 37)):
        search(monkeypatch, buckets=False)
        every = hash_pairs(values, max_distance, valid, videos, queries)
        search(monkeypatch, buckets=True)
        assert pair_search._bucket_plan(values, np.flatnonzero(valid), valid, max_distance) is not None
        bucketed = hash_pairs(values, max_distance, valid, videos, queries)
        assert len(every[0]) >= (2 if queries is not None else 20 if max_distance < 10 else 1000)
        assert as_list(*bucketed) == as_list(*every)


def test_a_pair_is_found_by_the_first_part_its_bits_agree_on() -> None:
    values = clustered_hashes(200, seed=5)
    word = words(values)
    assert word.tolist() == [int.from_bytes(bytes(v), "little") for v in values.tolist()]
    parts = 11
    keys = np.stack([part_keys(word, parts, part) for part in range(parts)], axis=1)
    for part in range(parts):  # each part holds bits part, part + 11, ... of the word, none twice
        bits = [(int(w) >> position) & 1 for w in word[:3] for position in range(part, BITS, parts)]
        assert bits == [(int(k) >> i) & 1 for k in keys[:3, part] for i in range(len(range(part, BITS, parts)))]
    a, b = np.repeat(np.arange(200), 200), np.tile(np.arange(200), 200)
    for part in range(1, parts):
        first = pair_search._FirstAgreement(parts, part)(word[a], word[b])
        assert first.tolist() == (~(keys[a, :part] == keys[b, :part]).any(axis=1)).tolist()


def test_parts_are_enough_for_the_distance_and_buckets_stay_large() -> None:
    assert parts_for(10, 1_000_000) == 11  # 11 parts of 5-6 bits: any pair within 10 bits agrees on one
    assert parts_for(0, 1_000_000) == 7  # buckets of ~1,000 at 10 bits a part, rather than one 64-bit part
    assert parts_for(3, 1_000) == 64
    values = clustered_hashes(1000)
    assert pair_search._bucket_plan(values, np.arange(1000), np.ones(1000, dtype=bool), 63) is None  # 64 parts
