"""Database access: lock, offline import, connect, close."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lightly_assets.publish.secrets import mask, userinfo
from lightly_assets.publish.studio.target import ANALYTICS_ENV, PROCESS_LOCK, StudioError, StudioTarget

if TYPE_CHECKING:
    from sqlmodel import Session

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------
# Database access: lock, import, connect, close.


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


@contextlib.contextmanager
def file_lock(target: StudioTarget) -> Iterator[None]:
    """Exclusive lock on `<db file>.lock`, so two uploads never write one DuckDB file at once."""
    if target.db_file is None:
        yield
        return
    db_file = Path(target.db_file).absolute()
    db_file.parent.mkdir(parents=True, exist_ok=True)
    lock_path = db_file.with_name(db_file.name + ".lock")
    deadline = time.monotonic() + target.lock_timeout_s
    with open(lock_path, "a") as handle:
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StudioError(
                        target.dataset_name,
                        f"{db_file} is being written by another upload (lock {lock_path} held for more "
                        f"than {target.lock_timeout_s:g} s); retry when it has finished",
                    ) from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


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
    from lightly_studio.database import db_manager

    with PROCESS_LOCK:
        db_manager.close()
        try:
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
