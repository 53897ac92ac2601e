from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetMaterialization, DagsterInstance
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from lightly_assets import sqlite_wal
from lightly_assets.sqlite_wal import KEEP_AT_MOST, keep_wal_open, kept_files


def _synchronous(db: Path) -> int:
    """`PRAGMA synchronous` as a fresh SQLAlchemy connection to `db` sees it (1 NORMAL, 2 FULL)."""
    engine = create_engine(f"sqlite:///{db}", poolclass=NullPool)
    with engine.connect() as conn:
        value = conn.execute(text("PRAGMA synchronous")).scalar_one()
    engine.dispose()
    return int(value)


def _wal_db(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    return path


def test_dagster_events_are_stored_without_the_log_checkpointed_away_and_other_processes_read_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    keep_wal_open()
    instance = DagsterInstance.get()
    for i in range(5):
        instance.report_runless_asset_event(AssetMaterialization(f"key{i}"))
    index = tmp_path / "history" / "runs" / "index.db"
    assert str(index) in kept_files()
    assert Path(f"{index}-wal").exists()  # without the idle connection the last close deletes it
    assert _synchronous(index) == 1
    count = "import sqlite3,sys; "
    count += "print(sqlite3.connect(sys.argv[1]).execute('select count(*) from event_logs').fetchall())"
    seen = subprocess.run([sys.executable, "-c", count, str(index)], capture_output=True, text=True, check=True)
    assert seen.stdout.strip() == "[(5,)]"
    assert instance.get_latest_materialization_event(AssetMaterialization("key3").asset_key) is not None


def test_a_database_with_a_rollback_journal_keeps_the_full_sync(tmp_path: Path) -> None:
    keep_wal_open()
    db = tmp_path / "plain.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x INTEGER)").connection.close()
    assert _synchronous(db) == 2
    assert str(db) not in kept_files()


def test_only_the_last_few_databases_are_held_open(tmp_path: Path) -> None:
    keep_wal_open()
    dbs = [_wal_db(tmp_path / f"run{i}.db") for i in range(KEEP_AT_MOST + 3)]
    for db in dbs:
        assert _synchronous(db) == 1
    held = kept_files()
    assert len(held) <= KEEP_AT_MOST
    assert str(dbs[-1]) in held and str(dbs[0]) not in held


def test_registering_twice_listens_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(sqlite_wal, "_hold", lambda path: calls.append(path))
    keep_wal_open()
    keep_wal_open()
    db = _wal_db(tmp_path / "once.db")
    _synchronous(db)
    assert calls.count(str(db)) == 1


def test_dagster_storages_reuse_one_engine_per_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []
    real = sqlite_wal.create_engine

    def counted(url: object, **options: object) -> object:
        made.append(str(url))
        return real(url, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_wal, "create_engine", counted)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    keep_wal_open()
    instance = DagsterInstance.get()
    for i in range(10):
        instance.report_runless_asset_event(AssetMaterialization(f"key{i}"))
    assert instance.get_latest_materialization_event(AssetMaterialization("key9").asset_key) is not None
    assert made and len(made) == len(set(made)) <= 4  # one engine per database file, not one per event


def test_only_plain_null_pool_engines_are_reused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert sqlite_wal.engine_for(url, poolclass=NullPool, connect_args={"timeout": 5}) is sqlite_wal.engine_for(
        url, poolclass=NullPool, connect_args={"timeout": 5}
    )
    assert sqlite_wal.engine_for(url, poolclass=NullPool) is not sqlite_wal.engine_for(
        url, poolclass=NullPool, connect_args={"timeout": 5}
    )
    assert sqlite_wal.engine_for(url, poolclass=NullPool, echo=False) is not sqlite_wal.engine_for(
        url, poolclass=NullPool, echo=False
    )
    assert sqlite_wal.engine_for(url) is not sqlite_wal.engine_for(url)  # a pooled engine holds connections
