"""Dagster's SQLite storages written without an fsync and a checkpoint per event.

Dagster's SQLite storages open a fresh connection for every event they store (a run's start stores ~60) and keep
SQLite's defaults: in WAL mode (which Dagster sets) each commit syncs the log to disk, and the last connection to
close checkpoints the log into the database and deletes it, so the next event creates it again. Together about
4 ms per event here, a third of the time from `lightly-assets run` to its first batch.

`keep_wal_open()` sets `synchronous=NORMAL` on each SQLite connection in WAL mode (SQLite's advice for WAL: a
transaction can be lost to a power cut, never the database) and holds one idle connection open to each database
file (the last few used, for the life of the process), so the log is checkpointed every 1,000 pages as SQLite
plans, not at every close. It uses SQLAlchemy's connect event and leaves other databases (rollback journals,
DuckDB) alone.

The same storages also build a new SQLAlchemy engine for every connection (a URL parsed, a dialect made and
initialised, a pool), twice for an asset event: storing one took 3.3 ms here, 1.9 ms with the engines reused, and
a run stores ~60 before its first batch (0.15-0.2 s of the ~2 s to it). So
`keep_wal_open()` also gives Dagster's three SQLite storage modules a `create_engine` that returns one engine per
database URL for the engines they ask for (NullPool: an engine that holds no connection). Each connection is still
opened and closed as Dagster does, and its `dispose()` only replaces the empty pool. This one assignment per module
is the only place the project reaches into Dagster's storage.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections import OrderedDict
from typing import Any

from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._core.storage.runs.sqlite import sqlite_run_storage
from dagster._core.storage.schedules.sqlite import sqlite_schedule_storage
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool

KEEP_AT_MOST = 8  # files held open at once: a run writes its own database and two shared ones
_kept: OrderedDict[str, sqlite3.Connection] = OrderedDict()
_lock = threading.Lock()


def keep_wal_open() -> None:
    """Tune every SQLite connection SQLAlchemy opens from now on in this process, and let Dagster's SQLite storages
    reuse their engines (idempotent)."""
    if not event.contains(Engine, "connect", _on_connect):
        event.listen(Engine, "connect", _on_connect)
    _reuse_engines()


def kept_files() -> list[str]:
    """The database files an idle connection is held open to (for tests and diagnostics)."""
    with _lock:
        return sorted(_kept)


def _on_connect(dbapi_connection: object, _record: object) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    mode = next(iter(dbapi_connection.execute("PRAGMA journal_mode").fetchall()), None)
    if mode is None or str(mode[0]).lower() != "wal":
        return  # a rollback journal needs the full sync to stay intact
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")
    path = _main_file(dbapi_connection)
    if path:
        _hold(path)


def _main_file(connection: sqlite3.Connection) -> str:
    """The main database's file ('' for an in-memory database)."""
    for _seq, name, file in connection.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return file or ""
    return ""


def _hold(path: str) -> None:
    with _lock:
        if path in _kept:
            _kept.move_to_end(path)
            return
        idle = sqlite3.connect(path, check_same_thread=False)
        idle.execute("PRAGMA synchronous=NORMAL")
        idle.execute("SELECT count(*) FROM sqlite_master").fetchall()  # a read maps the log's index: now it counts
        _kept[path] = idle
        while len(_kept) > KEEP_AT_MOST:  # an older run's database: closed like any other connection
            _kept.popitem(last=False)[1].close()


def _reuse_engines() -> None:
    """Dagster's SQLite storages make their engines with `engine_for` (idempotent)."""
    for module in (sqlite_event_log, sqlite_run_storage, sqlite_schedule_storage):
        module.create_engine = engine_for  # type: ignore[attr-defined]


def engine_for(url: Any, **options: Any) -> Engine:
    """`create_engine(url, **options)`, the same engine again for a NullPool engine asked for with the same URL
    text and a busy timeout at most; anything else is a new engine, as SQLAlchemy makes it."""
    connect_args = options.get("connect_args") or {}
    if (
        not isinstance(url, str)
        or options.get("poolclass") is not NullPool
        or set(options) - {"poolclass", "connect_args"}
        or set(connect_args) - {"timeout"}
    ):
        return create_engine(url, **options)
    return _null_pool_engine(url, connect_args.get("timeout"))


@functools.lru_cache(maxsize=KEEP_AT_MOST * 4)
def _null_pool_engine(url: str, timeout: Any) -> Engine:
    connect_args = {} if timeout is None else {"timeout": timeout}
    return create_engine(url, poolclass=NullPool, connect_args=connect_args)
