"""The Lightly embeddings CSV: `filenames, embedding_0 … embedding_{D-1}, labels`.

Written byte for byte as `lightly.utils.io.save_embeddings` writes a float32 matrix (csv module, excel
dialect: `\\r\\n` line ends, minimal quoting, floats as numpy's shortest repr of the float32 value), so
`load_embeddings` gives back the same float32 values and odd filenames (commas, quotes, newlines,
unicode) survive the round trip.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from lightly_assets.atomic import atomic_output
from lightly_assets.errors import LightlyAssetsError


class EmbeddingsFileError(LightlyAssetsError):
    """An embeddings CSV (ours or a custom one) that cannot be written, read or merged; names the file."""


def header_for(dim: int) -> list[str]:
    return ["filenames", *(f"embedding_{i}" for i in range(dim)), "labels"]


# Rows turned into text at a time: memory stays bounded by this many rows, not by the dataset.
_ROWS_PER_CHUNK = 4096


_NEEDS_QUOTES = frozenset(',"\r\n')


def _field(name: str) -> str:
    """A filename as the csv module's excel dialect writes it (minimal quoting, quotes doubled)."""
    if _NEEDS_QUOTES.isdisjoint(name):
        return name
    return '"' + name.replace('"', '""') + '"'


# Where Arrow's shortest float32 text is numpy's (checked on 20 million random values): outside it numpy writes
# its own forms ("1e-04", "1.234567e+06"), and "1.0", "0.0", "nan" for integers, zeros and non-finite values
_ARROW_FROM, _ARROW_BELOW = 1e-3, 1e5


def float_text(matrix: np.ndarray) -> list[list[str]]:
    """Each float32 value's text as csv.writer prints lightly's float32 embeddings: `str(np.float32(x))`, numpy's
    shortest round-trip repr. Arrow's cast gives the same digits 4-5x faster (a million rows of 32: ~20 s of
    numpy's); where its form differs (magnitudes outside [1e-3, 1e5), integers, non-finite values) numpy's own
    text is taken."""
    import pyarrow as pa  # the CSV's reader and writer alone need it (a dependency of LightlyStudio's too)
    import pyarrow.compute as pc

    values = np.ascontiguousarray(matrix, dtype=np.float32)
    flat = values.reshape(-1)
    text = pc.cast(pa.array(flat), pa.string()).to_numpy(zero_copy_only=False)
    magnitude = np.abs(flat)
    with np.errstate(invalid="ignore"):
        numpy_form = ~np.isfinite(flat) | (magnitude < _ARROW_FROM) | (magnitude >= _ARROW_BELOW)
        numpy_form |= flat == np.trunc(flat)
    text[numpy_form] = flat[numpy_form].astype(str)
    return text.reshape(values.shape).tolist()


def _chunk_text(names: Sequence[str], labels: Sequence[int], matrix: np.ndarray) -> bytes:
    """The CSV lines of one chunk, byte for byte what csv.writer writes; numbers never need quotes, so a row is one
    join."""
    rows = zip(names, float_text(matrix), labels, strict=True)
    return "".join(f"{_field(name)},{','.join(row)},{int(label)}\r\n" for name, row, label in rows).encode("utf-8")


class _Earlier(NamedTuple):
    """The file on disk and, per row to write, the byte span of the line there that this row would get (-1: none)."""

    data: bytes
    starts: np.ndarray  # (n,) int64
    ends: np.ndarray  # (n,) int64

    def runs(self) -> Iterator[tuple[int, int, bool]]:
        """(first row, end row, kept) of each run of rows: rows whose earlier lines follow each other in the file
        (written as one slice of it), or rows written anew. A rerun with a few new files has a few runs."""
        kept = self.starts >= 0
        change = np.ones(len(kept), dtype=bool)
        change[1:] = (kept[1:] != kept[:-1]) | (kept[1:] & (self.starts[1:] != self.ends[:-1]))
        bounds = [*np.flatnonzero(change).tolist(), len(kept)]
        for first, end in zip(bounds[:-1], bounds[1:], strict=True):
            yield first, end, bool(kept[first])


def _earlier_lines(path: Path, filenames: Sequence[str], matrix: np.ndarray, labels: Sequence[int]) -> _Earlier | None:
    """Per row, the span of the line of the file on disk with the same name, label and float32 bits (the bytes this
    row would get); None when there is no plain earlier file (absent, unreadable, another header or a quoted name)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    header = (",".join(header_for(matrix.shape[1])) + "\r\n").encode()
    if b'"' in data or not data.startswith(header) or not data.endswith(b"\r\n"):
        return None
    parsed = _parse_plain(data)  # the exact float32 values (a million rows: ~2 s; numpy's loadtxt took ~9 s)
    if parsed is None or not parsed[0]:
        return None
    names, old, old_labels = parsed
    line_ends = _line_ends(data)  # the header's first
    if len(line_ends) != len(names) + 1 or not _crlf(data, line_ends) or len(set(names)) != len(names):
        return None
    at = pd.Index(names).get_indexer(list(filenames))
    rows = np.flatnonzero(at >= 0)
    bits = np.ascontiguousarray(matrix[rows], dtype=np.float32).view(np.uint32)
    same = (old[at[rows]].view(np.uint32) == bits).all(axis=1)
    same &= np.array(old_labels, dtype=np.int64)[at[rows]] == np.asarray(labels)[rows]
    kept = rows[same]
    starts, ends = np.full(len(filenames), -1, np.int64), np.full(len(filenames), -1, np.int64)
    starts[kept], ends[kept] = line_ends[at[kept]], line_ends[at[kept] + 1]  # row k is the file's line k + 1
    return _Earlier(data, starts, ends)


def _line_ends(data: bytes) -> np.ndarray:
    """The offset just past each newline, a block at a time: a mask of the whole file would be its size again."""
    view, block = np.frombuffer(data, dtype=np.uint8), 1 << 24
    return np.concatenate([np.flatnonzero(view[at : at + block] == 10) + at + 1 for at in range(0, len(view), block)])


def _crlf(data: bytes, line_ends: np.ndarray) -> bool:
    """Whether every line ends with CR LF, as csv.writer ends them (a line copied must be the line it would write)."""
    return bool(len(line_ends)) and bool((np.frombuffer(data, dtype=np.uint8)[line_ends - 2] == 13).all())


def write_embeddings_csv(path: Path | str, filenames: Sequence[str], matrix: np.ndarray, labels: Sequence[int]) -> Path:
    """Write the CSV atomically (temporary file in the same folder, then `os.replace`); returns the path.

    One streaming pass over the rows, a chunk at a time, so a million samples need no million-row text copy. Rows
    whose name, label and float32 bits the file on disk already holds keep that file's lines, copied as slices of
    its bytes: numbers to text is most of the time (`float_text`: a million rows of 32 written in 7.5 s, 19.5 s
    with numpy's text alone), and a rerun with a few new files turns only those.
    """
    path = Path(path)
    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise EmbeddingsFileError(f"{path}: embeddings must be a non-empty (n, d) matrix, got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        raise EmbeddingsFileError(f"{path}: no sample was embedded, so the earlier CSV (if any) is kept")
    if not (len(filenames) == len(labels) == matrix.shape[0]):
        raise EmbeddingsFileError(
            f"{path}: {matrix.shape[0]} embeddings, {len(filenames)} filenames and {len(labels)} labels: "
            "the counts differ"
        )
    earlier = _earlier_lines(path, filenames, matrix, labels)
    runs = earlier.runs() if earlier is not None else iter([(0, matrix.shape[0], False)])
    with atomic_output(path) as out:
        out.write((",".join(header_for(matrix.shape[1])) + "\r\n").encode())  # no header name needs quotes
        for first, end, kept in runs:
            if kept and earlier is not None:
                out.write(memoryview(earlier.data)[earlier.starts[first] : earlier.ends[end - 1]])
                continue
            for start in range(first, end, _ROWS_PER_CHUNK):
                stop = min(start + _ROWS_PER_CHUNK, end)
                out.write(_chunk_text(filenames[start:stop], labels[start:stop], matrix[start:stop]))
    return path


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise EmbeddingsFileError(f"{path}: file not found") from None
    except OSError as exc:
        raise EmbeddingsFileError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _decoded(data: str | bytes, path: Path) -> str:
    try:
        return data if isinstance(data, str) else data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EmbeddingsFileError(f"{path}: not a readable UTF-8 CSV file ({exc})") from None


def _read_text(path: Path) -> str:
    return _decoded(_read_bytes(path), path)


def _read_rows(path: Path, text: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file (or of `text`, named `path` in errors); every row as wide as the header."""
    text = _read_text(path) if text is None else text
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=",")
        header = next(reader, None)
        rows = list(reader)
    except csv.Error as exc:
        raise EmbeddingsFileError(f"{path}: not a readable CSV file ({exc})") from None
    if not header:
        raise EmbeddingsFileError(f"{path}: empty file, expected a header row")
    for i, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise EmbeddingsFileError(f"{path}: row {i} has {len(row)} fields, the header has {len(header)}")
    return header, rows


def _to_float32(path: Path, columns: list[str], cells: list[list[str]], n_cols: int) -> np.ndarray:
    """Parse as float64 then cast, exactly what `load_embeddings(...)` followed by `.astype(float32)` gives."""
    if not cells:
        return np.zeros((0, n_cols), dtype=np.float32)
    try:
        return np.array(cells, dtype=str).astype(np.float64).astype(np.float32)
    except ValueError:
        for j, name in enumerate(columns):
            for i, row in enumerate(cells, start=2):
                try:
                    float(row[j])
                except ValueError:
                    raise EmbeddingsFileError(f"{path}: row {i}, column {name!r}: {row[j]!r} is not a number") from None
        raise


def read_embeddings_csv(path: Path | str) -> tuple[list[str], np.ndarray, list[int]]:
    """Filenames, float32 matrix (read-only) and labels of a Lightly embeddings CSV (the header is checked first).

    The last file parsed is kept, keyed by its inode, size and modification time: three steps of one run read the
    same CSV (2-4 s each at a million rows), and a rewritten CSV is a new inode (`atomic_output` renames)."""
    path = Path(path)
    stat = path.stat() if path.is_file() else None
    if stat is None:
        return parse_embeddings_csv(_read_bytes(path), path)  # its error names the file
    names, matrix, labels = _parsed(path, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return list(names), matrix, list(labels)


@lru_cache(maxsize=1)
def _parsed(path: Path, inode: int, size: int, mtime_ns: int) -> tuple[list[str], np.ndarray, list[int]]:
    del inode, size, mtime_ns  # the cache's key: the same file, unchanged
    names, matrix, labels = parse_embeddings_csv(_read_bytes(path), path)
    matrix.flags.writeable = False  # shared by every caller until the file changes
    return names, matrix, labels


def parse_embeddings_csv(data: str | bytes, where: Path | str) -> tuple[list[str], np.ndarray, list[int]]:
    """`read_embeddings_csv` for a CSV already in memory (a bucket object); `where` names it in errors."""
    parsed = _parse_plain(data.encode("utf-8") if isinstance(data, str) else data)
    if parsed is not None:
        return parsed
    path = Path(where)
    header, rows = _read_rows(path, _decoded(data, path))
    problems = header_problems(header)
    if problems:
        raise EmbeddingsFileError(f"{path} is not a Lightly embeddings CSV: {'; '.join(problems)}")
    columns = header[1:-1]
    matrix = _to_float32(path, columns, [row[1:-1] for row in rows], len(columns))
    try:
        labels = [int(row[-1]) for row in rows]
    except ValueError as exc:
        raise EmbeddingsFileError(f"{path}: a label is not an integer ({exc})") from None
    return [row[0] for row in rows], matrix, labels


def _parse_plain(data: bytes) -> tuple[list[str], np.ndarray, list[int]] | None:
    """Arrow's multithreaded CSV reader for a well-formed Lightly CSV (a million rows of 32 values: 1.5 s against
    15.5 s for pandas' C parser with exact floats); None for anything unusual (a bad header, a short or long row,
    an empty cell, NaN, a label that is not an integer, bytes that are not UTF-8), which the csv-module reader then
    parses or explains. Values are the same: Arrow parses a number correctly rounded, as Python's `float` does."""
    import pyarrow as pa  # the embeddings CSV's reader alone needs it (a dependency of LightlyStudio's too)
    import pyarrow.csv as pa_csv

    end = data.find(b"\n")
    first_line = data[: end if end >= 0 else len(data)].decode("utf-8", errors="replace")
    header = next(csv.reader(io.StringIO(first_line, newline=""), delimiter=","), None)
    if not header or header_problems(header):
        return None
    types = {"filenames": pa.string(), "labels": pa.int64(), **dict.fromkeys(header[1:-1], pa.float64())}
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(data),
            # a newline can only be inside a quoted value; the parse is twice as slow when it may be
            parse_options=pa_csv.ParseOptions(newlines_in_values=b'"' in data, ignore_empty_lines=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=types, null_values=[], strings_can_be_null=False, quoted_strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.column_names != header:
        return None
    matrix = np.empty((table.num_rows, len(header) - 2), dtype=np.float32)
    for j, name in enumerate(header[1:-1]):
        matrix[:, j] = table.column(name).to_numpy()  # float64 values, rounded once to float32 as before
    if not np.isfinite(matrix).all():
        return None
    names: list[str] = table.column("filenames").to_pylist()
    labels: list[int] = table.column("labels").to_numpy().tolist()
    return names, matrix, labels


def check_header(path: Path | str) -> list[str]:
    """Problems with the header: `filenames` first, `embedding_0..D-1` consecutive and grouped, `labels` last."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f, delimiter=","), None)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return [f"cannot read the header: {exc}"]
    return header_problems(header or [])


def header_problems(header: list[str]) -> list[str]:
    """What is wrong with a header row; empty when it is Lightly's."""
    if not header:
        return ["the file is empty (no header row)"]
    problems = []
    if any(col != col.strip() for col in header):
        problems.append("a column name has leading or trailing whitespace")
    if header[0] != "filenames":
        problems.append(f"the first column is {header[0]!r}, not 'filenames'")
    if header[-1] != "labels":
        problems.append(f"the last column is {header[-1]!r}, not 'labels'")
    if header.count("labels") > 1 or header.count("filenames") > 1:
        problems.append("'filenames' or 'labels' appears more than once")
    middle = header[1:-1]
    if not middle:
        problems.append("no embedding_ columns")
    expected = [f"embedding_{i}" for i in range(len(middle))]
    if middle != expected:
        wrong = [(i + 1, got) for i, (got, want) in enumerate(zip(middle, expected, strict=True)) if got != want]
        col, got = wrong[0]
        problems.append(
            f"embedding columns must be embedding_0..embedding_{len(middle) - 1}, consecutive and grouped "
            f"between 'filenames' and 'labels'; column {col} is {got!r}"
        )
    return problems


def merge_custom_embeddings(
    filenames: Sequence[str],
    matrix: np.ndarray,
    custom_csv: Path | str,
    all_samples: Sequence[str] | None = None,
) -> np.ndarray:
    """Append the custom CSV's embedding columns after the model's; rows are matched by filename.

    The custom CSV has a `filenames` column plus numeric columns (any names; a `labels` column is ignored,
    so a Lightly CSV works too). Every embedded sample must be there exactly once; rows for samples that
    could not be decoded (`all_samples` minus `filenames`) are allowed and dropped.
    """
    path = Path(custom_csv)
    header, rows = _read_rows(path)
    if "filenames" not in header:
        raise EmbeddingsFileError(f"{path}: custom embeddings need a 'filenames' column; header is {header[:6]}")
    name_col = header.index("filenames")
    value_cols = [i for i, col in enumerate(header) if col not in ("filenames", "labels")]
    if not value_cols:
        raise EmbeddingsFileError(f"{path}: no embedding columns besides 'filenames'/'labels'")
    names = [row[name_col] for row in rows]
    position = _unique_positions(path, names)
    missing = [f for f in filenames if f not in position]
    wanted = set(filenames) | set(all_samples or ())
    extra = [f for f in names if f not in wanted]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} sample(s) missing from it, e.g. {missing[:3]}")
        if extra:
            parts.append(f"{len(extra)} filename(s) that are not samples of the dataset, e.g. {extra[:3]}")
        raise EmbeddingsFileError(f"{path}: custom embeddings do not match the samples: {'; '.join(parts)}")
    order = [position[f] for f in filenames]
    cells = [[rows[i][j] for j in value_cols] for i in order]
    custom = _to_float32(path, [header[j] for j in value_cols], cells, len(value_cols))
    bad = np.argwhere(~np.isfinite(custom))
    if len(bad):
        row, col = bad[0]
        raise EmbeddingsFileError(
            f"{path}: {len(bad)} NaN or infinite value(s), e.g. column '{header[value_cols[col]]}' "
            f"of '{filenames[row]}'"
        )
    return np.concatenate([np.asarray(matrix, dtype=np.float32), custom], axis=1)


def _unique_positions(path: Path, names: list[str]) -> dict[str, int]:
    position: dict[str, int] = {}
    duplicates = []
    for i, name in enumerate(names):
        if name in position:
            duplicates.append(name)
        position[name] = i
    if duplicates:
        raise EmbeddingsFileError(f"{path}: filenames listed more than once, e.g. {duplicates[:3]}")
    return position


def require_unique_finite(path: Path | str, filenames: Sequence[str], matrix: np.ndarray) -> None:
    """A CSV that publishing can trust: every filename once, every value finite."""
    _unique_positions(Path(path), list(filenames))
    if matrix.size and not np.isfinite(matrix).all():
        raise EmbeddingsFileError(f"{path}: NaN or infinite embedding values")
