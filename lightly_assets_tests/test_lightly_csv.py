"""The Lightly embeddings CSV: byte-identical to lightly's writer, exact float32 round trip, odd filenames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lightly.utils.io import check_embeddings, load_embeddings, save_embeddings

from lightly_assets.lightly_csv import (
    EmbeddingsFileError,
    _earlier_lines,
    _parse_plain,
    _read_rows,
    check_header,
    float_text,
    merge_custom_embeddings,
    read_embeddings_csv,
    write_embeddings_csv,
)

NASTY = [
    "plain.jpg",
    "with,comma.jpg",
    'with"quote".jpg',
    "with\nnewline.jpg",
    "with\r\ncrlf.jpg",
    "ünïcødé/日本語 画像.png",
    " leading and trailing space .jpg",
    "sub/dir/deep.png",
    "NA",
    "my_video_1-007-mp4.png",
]


def _matrix(n: int, d: int, seed: int = 0) -> np.ndarray:
    """Values over many magnitudes plus the awkward ones: subnormals, extremes, signed zero."""
    rng = np.random.default_rng(seed)
    m = (rng.standard_normal((n, d)) * 10.0 ** rng.integers(-30, 30, (n, d))).astype(np.float32)
    specials = np.array([0.0, -0.0, 1e-45, -1.4e-45, 3.4028235e38, 1.1754944e-38, 0.1, 1 / 3], dtype=np.float32)
    m.flat[: len(specials)] = specials
    return m


def test_bytes_equal_lightly_save_embeddings(tmp_path: Path) -> None:
    m = _matrix(len(NASTY), 5)
    labels = list(range(len(NASTY)))
    ours = write_embeddings_csv(tmp_path / "ours.csv", NASTY, m, labels)
    save_embeddings(str(tmp_path / "lightly.csv"), m, labels, NASTY)
    assert ours.read_bytes() == (tmp_path / "lightly.csv").read_bytes()
    assert ours.read_bytes().startswith(
        b"filenames,embedding_0,embedding_1,embedding_2,embedding_3,embedding_4,labels\r\n"
    )


def test_round_trip_exact_float32_through_lightly(tmp_path: Path) -> None:
    m = _matrix(len(NASTY), 32, seed=1)
    labels = [i % 3 for i in range(len(NASTY))]
    path = write_embeddings_csv(tmp_path / "out" / "embeddings.csv", NASTY, m, labels)
    check_embeddings(str(path))
    emb, lab, names = load_embeddings(str(path))
    assert names == NASTY
    assert lab == labels
    assert np.array_equal(emb.astype(np.float32).view(np.uint32), m.view(np.uint32))
    names2, m2, lab2 = read_embeddings_csv(path)
    assert names2 == NASTY and lab2 == labels
    assert m2.dtype == np.float32
    assert np.array_equal(m2.view(np.uint32), m.view(np.uint32))


def test_many_rows_equal_lightly_both_ways(tmp_path: Path) -> None:
    """More rows than the writer turns into text at once, read back exactly (the reader's fast path)."""
    names = [f"{i}-{name}" for i, name in enumerate(NASTY * 500)]
    m, labels = _matrix(len(names), 8, seed=2), [i % 7 for i in range(len(names))]
    ours = write_embeddings_csv(tmp_path / "ours.csv", names, m, labels)
    save_embeddings(str(tmp_path / "lightly.csv"), m, labels, names)
    assert ours.read_bytes() == (tmp_path / "lightly.csv").read_bytes()
    names2, m2, labels2 = read_embeddings_csv(ours)
    assert names2 == names and labels2 == labels
    assert np.array_equal(m2.view(np.uint32), m.view(np.uint32))


def test_float_text_is_numpy_s_text_of_every_kind_of_float32() -> None:
    """Every exponent (random bit patterns), many values where Arrow's text is taken, and the edges of that range:
    the text of `str(np.float32(x))`, which csv.writer prints for lightly's embeddings."""
    rng = np.random.default_rng(7)
    every = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    low, high = np.float32(1e-3).view(np.uint32), np.float32(1e5).view(np.uint32)
    arrow = rng.integers(int(low) - 1000, int(high) + 1000, 200_000, dtype=np.int64).astype(np.uint32).view(np.float32)
    edges = np.array([1e-3, 1e5, 0.5, 1.0, -3.0, 99999.99, 1e-4, 1e6, 1234567.0, 65504.0, 0.0, -0.0], np.float32)
    values = np.concatenate([every, arrow, -arrow, edges, np.nextafter(edges, np.float32(np.inf))])
    values = np.concatenate([values, [np.nan, np.inf, -np.inf]]).astype(np.float32).reshape(-1, 3)
    assert float_text(values) == values.astype(str).tolist()


def test_typical_embeddings_equal_lightly_s_csv(tmp_path: Path) -> None:
    """Unit vectors' values, nearly all in the range where Arrow's text is taken."""
    names = [f"img-{i}.jpg" for i in range(3000)]
    m = (np.random.default_rng(8).standard_normal((3000, 32)) / 5.6).astype(np.float32)
    ours = write_embeddings_csv(tmp_path / "ours.csv", names, m, [0] * 3000)
    save_embeddings(str(tmp_path / "lightly.csv"), m, [0] * 3000, names)
    assert ours.read_bytes() == (tmp_path / "lightly.csv").read_bytes()


def test_the_fast_reader_takes_odd_filenames_and_agrees_with_the_csv_module(tmp_path: Path) -> None:
    """Quoted commas, quotes and line ends in names stay on the fast path (Arrow's reader), with the same values
    as the csv module and Python's `float` give; a file without quotes too."""
    m = _matrix(len(NASTY) * 40, 6, seed=3)
    for names in (NASTY * 40, [f"{i}.png" for i in range(len(NASTY) * 40)]):
        path = write_embeddings_csv(tmp_path / "e.csv", names, m, list(range(len(names))))
        fast = _parse_plain(path.read_bytes())
        assert fast is not None
        _, rows = _read_rows(path)
        assert fast[0] == [row[0] for row in rows] == names
        slow = np.array([[float(v) for v in row[1:-1]] for row in rows]).astype(np.float32)
        assert np.array_equal(fast[1].view(np.uint32), slow.view(np.uint32))
        assert fast[2] == [int(row[-1]) for row in rows]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a.png,1,2,0\nb.png,1,2,0,9\n", "row 3 has 5 fields, the header has 4"),
        ("a.png,1,2,0\n\n", "row 3 has 0 fields, the header has 4"),
        ("a.png,1,2\n", "row 2 has 3 fields, the header has 4"),
        ("a.png,1,,0\n", "column 'embedding_1': '' is not a number"),
        ("a.png,1,2,zero\n", "a label is not an integer"),
    ],
)
def test_malformed_rows_are_named(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "e.csv"
    path.write_text("filenames,embedding_0,embedding_1,labels\n" + body, encoding="utf-8")
    with pytest.raises(EmbeddingsFileError, match=message):
        read_embeddings_csv(path)


def test_non_finite_values_are_read_as_lightly_reads_them(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text("filenames,embedding_0,embedding_1,labels\na.png,nan,inf,0\n", encoding="utf-8")
    names, m, labels = read_embeddings_csv(path)
    assert names == ["a.png"] and labels == [0]
    assert np.isnan(m[0, 0]) and np.isinf(m[0, 1])


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = write_embeddings_csv(tmp_path / "e.csv", ["a.png"], np.ones((1, 2), np.float32), [0])
    before = path.read_bytes()
    with pytest.raises(EmbeddingsFileError, match="counts differ"):
        write_embeddings_csv(path, ["a.png", "b.png"], np.ones((1, 2), np.float32), [0])
    with pytest.raises(TypeError):
        write_embeddings_csv(path, ["a.png"], np.ones((1, 2), np.float32), [object()])  # fails mid-write
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["e.csv"]
    assert (path.stat().st_mode & 0o777) == 0o644


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_check_header(tmp_path: Path) -> None:
    good = write_embeddings_csv(tmp_path / "good.csv", ["a"], np.zeros((1, 3), np.float32), [0])
    assert check_header(good) == []
    cases = {
        "labels,embedding_0,filenames\r\n": ["first column", "last column"],
        "filenames,embedding_0,embedding_2,labels\r\n": ["column 2 is 'embedding_2'"],
        "filenames,embedding_0,labels,embedding_1\r\n": ["last column", "column 2 is 'labels'"],
        "filenames,embedding_1,embedding_0,labels\r\n": ["column 1 is 'embedding_1'"],
        "filenames,labels\r\n": ["no embedding_ columns"],
        "filenames, embedding_0,labels\r\n": ["whitespace"],
        "": ["empty"],
    }
    for i, (text, expected) in enumerate(cases.items()):
        problems = check_header(_write(tmp_path / f"bad{i}.csv", text))
        for fragment in expected:
            assert any(fragment in p for p in problems), (text, problems)
    with pytest.raises(EmbeddingsFileError, match="bad1.csv"):
        read_embeddings_csv(tmp_path / "bad1.csv")


def test_merge_custom_embeddings_appends_in_sample_order(tmp_path: Path) -> None:
    names = ["a,1.png", "b.png", 'c"q.png']
    model = np.arange(6, dtype=np.float32).reshape(3, 2)
    custom = _write(
        tmp_path / "custom.csv",
        'filenames,width,height,labels\r\nb.png,0.5,7,9\r\n"c""q.png",1e-3,8,9\r\n"a,1.png",-2.25,6,9\r\n',
    )
    merged = merge_custom_embeddings(names, model, custom)
    expected = np.array([[0, 1, -2.25, 6], [2, 3, 0.5, 7], [4, 5, 1e-3, 8]], dtype=np.float32)
    assert merged.dtype == np.float32
    assert np.array_equal(merged, expected)
    out = write_embeddings_csv(tmp_path / "e.csv", names, merged, [0, 1, 0])
    assert check_header(out) == []
    check_embeddings(str(out))
    assert (
        out.read_text(encoding="utf-8").splitlines()[0]
        == "filenames,embedding_0,embedding_1,embedding_2,embedding_3,labels"
    )


def test_merge_custom_embeddings_errors(tmp_path: Path) -> None:
    names = ["a.png", "b.png"]
    model = np.zeros((2, 2), np.float32)
    missing = _write(tmp_path / "missing.csv", "filenames,embedding_0\r\na.png,1\r\n")
    with pytest.raises(EmbeddingsFileError, match=r"missing\.csv.*1 sample\(s\) missing.*'b\.png'"):
        merge_custom_embeddings(names, model, missing)
    extra = _write(tmp_path / "extra.csv", "filenames,embedding_0\r\na.png,1\r\nb.png,2\r\nz.png,3\r\n")
    with pytest.raises(EmbeddingsFileError, match=r"extra\.csv.*not samples.*'z\.png'"):
        merge_custom_embeddings(names, model, extra)
    text = _write(tmp_path / "text.csv", "filenames,score\r\na.png,1\r\nb.png,high\r\n")
    with pytest.raises(EmbeddingsFileError, match=r"text\.csv: row 3, column 'score': 'high' is not a number"):
        merge_custom_embeddings(names, model, text)
    dup = _write(tmp_path / "dup.csv", "filenames,e\r\na.png,1\r\na.png,1\r\nb.png,2\r\n")
    with pytest.raises(EmbeddingsFileError, match=r"dup\.csv.*more than once"):
        merge_custom_embeddings(names, model, dup)
    nocol = _write(tmp_path / "nocol.csv", "name,e\r\na.png,1\r\n")
    with pytest.raises(EmbeddingsFileError, match=r"nocol\.csv.*'filenames' column"):
        merge_custom_embeddings(names, model, nocol)
    with pytest.raises(EmbeddingsFileError, match="absent.csv: file not found"):
        merge_custom_embeddings(names, model, tmp_path / "absent.csv")


def test_a_csv_read_again_is_not_parsed_again_until_it_is_rewritten(tmp_path: Path, monkeypatch) -> None:
    import lightly_assets.lightly_csv as lightly_csv

    parsed = []
    parse = lightly_csv.parse_embeddings_csv
    monkeypatch.setattr(lightly_csv, "parse_embeddings_csv", lambda *a: parsed.append(a[1]) or parse(*a))
    path = write_embeddings_csv(tmp_path / "embeddings.csv", ["a.jpg", "b.jpg"], np.eye(2, dtype=np.float32), [0, 1])
    first, again = read_embeddings_csv(path), read_embeddings_csv(path)
    assert len(parsed) == 1 and first[0] == again[0] == ["a.jpg", "b.jpg"] and first[2] == again[2] == [0, 1]
    first[0].append("changed by a caller")  # lists are the caller's own; the shared matrix cannot be changed
    assert read_embeddings_csv(path)[0] == ["a.jpg", "b.jpg"]
    with pytest.raises(ValueError, match="read-only"):
        again[1][0, 0] = 5.0
    write_embeddings_csv(path, ["c.jpg"], np.ones((1, 2), dtype=np.float32), [1])
    assert read_embeddings_csv(path)[0] == ["c.jpg"] and len(parsed) == 2


def test_a_rewrite_keeps_unchanged_lines_and_equals_a_fresh_write(tmp_path: Path) -> None:
    names = [f"dir/{i:03d}.jpg" for i in range(300)]
    m = _matrix(300, 16, seed=2)
    labels = [i % 4 for i in range(300)]
    path = write_embeddings_csv(tmp_path / "embeddings.csv", names, m, labels)
    m2, labels2 = m.copy(), list(labels)
    m2[0, 0], m[0, 0] = -0.0, 0.0  # the same number, other bits: written anew
    m2[5, 3] = np.nextafter(m2[5, 3], np.float32(np.inf))  # one ulp
    labels2[7] = 9
    keep = [i for i in range(300) if i != 11]
    names3 = [names[i] for i in keep] + ["dir/new.jpg"]
    m3 = np.concatenate([m2[keep], _matrix(1, 16, seed=3)])
    labels3 = [labels2[i] for i in keep] + [1]
    write_embeddings_csv(tmp_path / "embeddings.csv", names, m, labels)  # the earlier file, with m[0, 0] = +0.0
    earlier = _earlier_lines(path, names3, m3, labels3)
    assert earlier is not None
    assert np.flatnonzero(earlier.starts < 0).tolist() == [0, 5, 7, len(names3) - 1]
    assert [kept for *_, kept in earlier.runs()] == [False, True, False, True, False, True, True, False]  # 11 gone
    write_embeddings_csv(path, names3, m3, labels3)
    fresh = write_embeddings_csv(tmp_path / "fresh" / "embeddings.csv", names3, m3, labels3)
    assert path.read_bytes() == fresh.read_bytes()
    order = np.random.default_rng(0).permutation(len(names3))  # every line kept, few of them next to each other
    shuffled = [names3[i] for i in order], m3[order], [labels3[i] for i in order]
    write_embeddings_csv(path, *shuffled)
    assert path.read_bytes() == write_embeddings_csv(tmp_path / "fresh" / "embeddings.csv", *shuffled).read_bytes()
    quoted = write_embeddings_csv(tmp_path / "nasty.csv", NASTY, _matrix(len(NASTY), 4), list(range(len(NASTY))))
    assert _earlier_lines(quoted, NASTY, _matrix(len(NASTY), 4), list(range(len(NASTY)))) is None  # quoted: anew
