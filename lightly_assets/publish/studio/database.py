"""Database access: locks, offline import, connect, close.

A DuckDB file has one writer at a time: uploads take an exclusive `flock` on `<db file>.lock`. A shared
PostgreSQL database takes several uploads at once, serialized by PostgreSQL's own advisory locks: one key for
LightlyStudio's schema creation and migrations (two first uploads into a fresh database would otherwise both
create it and one fail with `UniqueViolation ... pg_type_typname_nsp_index`), and one key per dataset name for
its writes. The locks are session locks on a connection of their own, so they are released when the upload
ends or its process dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lightly_assets.locks import LockTimeout, exclusive
from lightly_assets.publish.secrets import mask, userinfo
from lightly_assets.publish.studio.target import ANALYTICS_ENV, PROCESS_LOCK, StudioError, StudioTarget

if TYPE_CHECKING:
    import sqlalchemy
    from sqlmodel import Session

logger = logging.getLogger(__name__)

SCHEMA_LOCK = "lightly-assets:studio-schema"


def _db_url(target: StudioTarget) -> str:
    if target.db_file is not None:
        return f"duckdb:///{Path(target.db_file).absolute().as_posix()}"
    url = os.environ.get(str(target.db_url_env), "")
    if not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise StudioError(
            target.dataset_name, f"${target.db_url_env} must hold a postgresql:// URL (it is unset or not one)"
        )
    return url


def scrub(text: str, target: StudioTarget) -> str:
    """Remove the database URL and its password from a message."""
    if target.db_url_env is None:
        return text
    url = os.environ.get(target.db_url_env, "")
    return mask(text, [url, *userinfo(url)])


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for `pg_advisory_lock`, the same in every process and on every machine."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big", signed=True)


def dataset_lock_name(dataset_name: str) -> str:
    return f"lightly-assets:studio-dataset:{dataset_name}"


@contextlib.contextmanager
def writer_lock(target: StudioTarget) -> Iterator[None]:
    """Exclusive right to write this dataset: the file lock for DuckDB, an advisory lock for PostgreSQL."""
    if target.db_file is not None:
        with file_lock(target):
            yield
        return
    with advisory_lock(target, dataset_lock_name(target.dataset_name), f"dataset {target.dataset_name!r}"):
        yield


@contextlib.contextmanager
def advisory_lock(target: StudioTarget, name: str, what: str) -> Iterator[None]:
    """Hold PostgreSQL's session advisory lock on `advisory_key(name)`, waiting at most `lock_timeout_s`.

    The wait is PostgreSQL's own (`lock_timeout`); the lock lives on a connection of its own, so it is released
    when the block ends, and by the server when the process dies.
    """
    # SQLAlchemy only for a PostgreSQL database (LightlyStudio's driver)
    import sqlalchemy as sa
    from sqlalchemy.exc import OperationalError

    engine = _lock_engine(target)
    key = advisory_key(name)
    try:
        try:
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except Exception as error:  # unreachable server, bad credentials, missing database: one clear line
            raise StudioError(target.dataset_name, _connect_problem(error, target)) from None
        with conn:
            conn.execute(sa.text(f"SET lock_timeout = {max(1, int(target.lock_timeout_s * 1000))}"))
            try:
                conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            except OperationalError as error:
                if getattr(error.orig, "sqlstate", None) != "55P03":  # lock_not_available
                    raise StudioError(target.dataset_name, _connect_problem(error, target)) from None
                raise StudioError(
                    target.dataset_name,
                    f"{what} in {target.describe()} is being written by another upload (PostgreSQL advisory "
                    f"lock {key} held for more than {target.lock_timeout_s:g} s); retry when it has finished",
                ) from None
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        engine.dispose()


def _lock_engine(target: StudioTarget) -> sqlalchemy.Engine:
    """An engine on the database LightlyStudio uses, with its driver (psycopg 3), without a pool."""
    # SQLAlchemy and LightlyStudio (seconds to import) only for a PostgreSQL database
    import sqlalchemy as sa

    import_studio()  # offline first: importing any part of lightly_studio runs its package set-up
    from lightly_studio.database.db_url import ensure_psycopg3_driver

    url = ensure_psycopg3_driver(engine_url=_db_url(target))
    _create_database_if_missing(url, target)
    return sa.create_engine(url, poolclass=sa.NullPool)


def _create_database_if_missing(url: str, target: StudioTarget) -> None:
    """What LightlyStudio does on first connect, done before the lock, since the lock lives in the database."""
    # sqlalchemy_utils only for a PostgreSQL database
    import sqlalchemy_utils

    try:
        if sqlalchemy_utils.database_exists(url):
            return
        sqlalchemy_utils.create_database(url)
    except Exception as error:  # noqa: BLE001 - a concurrent creator won; anything else shows on connect
        if "already exists" not in str(error):
            logger.debug("creating the database failed: %s", scrub(str(error), target))


@contextlib.contextmanager
def file_lock(target: StudioTarget) -> Iterator[None]:
    """Exclusive lock on `<db file>.lock`, so two uploads never write one DuckDB file at once."""
    if target.db_file is None:
        yield
        return
    db_file = Path(target.db_file).absolute()
    lock_path = db_file.with_name(db_file.name + ".lock")
    acquired = False
    try:
        with exclusive(lock_path, timeout_s=target.lock_timeout_s):
            acquired = True
            yield
    except LockTimeout:
        if acquired:  # not ours: raised by the block
            raise
        raise StudioError(
            target.dataset_name,
            f"{db_file} is being written by another upload (lock {lock_path} held for more "
            f"than {target.lock_timeout_s:g} s); retry when it has finished",
        ) from None


def import_studio() -> None:
    """Import lightly_studio offline, without letting it take over the root logger."""
    os.environ[ANALYTICS_ENV] = "false"
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import lightly_studio  # noqa: F401
    from lightly_studio.dataset import env

    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    if env.LIGHTLY_STUDIO_ANALYTICS_ENABLED:
        logger.warning(
            "lightly_studio was imported before lightly_assets.publish.studio with analytics on; "
            "set %s=false in the environment to keep it offline",
            ANALYTICS_ENV,
        )


@contextlib.contextmanager
def connected(target: StudioTarget) -> Iterator[Session]:
    """Open the database for this process, yield LightlyStudio's session, always close it again."""
    import_studio()
    # LightlyStudio takes seconds to import: only uploads and its GUI need it
    from lightly_studio.database import db_manager

    schema_lock = (
        advisory_lock(target, SCHEMA_LOCK, "the LightlyStudio schema")
        if target.db_url_env is not None
        else contextlib.nullcontext()
    )
    with PROCESS_LOCK:
        db_manager.close()
        try:
            with schema_lock:  # LightlyStudio creates or migrates its schema on connect
                db_manager.connect(db_url=_db_url(target))
        except StudioError:
            raise
        except Exception as error:  # any driver error becomes one clear message
            raise StudioError(target.dataset_name, _connect_problem(error, target)) from (
                None if target.db_url_env else error
            )
        session = db_manager.persistent_session()
        try:
            yield session
        except BaseException:
            with contextlib.suppress(Exception):
                session.rollback()
            raise
        finally:
            with contextlib.suppress(Exception):
                db_manager.close()


def _connect_problem(error: Exception, target: StudioTarget) -> str:
    message = scrub(f"{type(error).__name__}: {error}", target)
    if "locked by another process" in message or "Could not set lock" in message:
        return (
            f"cannot open {target.describe()}: another process has it open (a running `lightly-studio gui`?); "
            "stop it and retry"
        )
    return f"cannot open {target.describe()}: {message}"
