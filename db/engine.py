"""Opening the database: URL handling, SQLite durability settings, locking and error translation."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url

from tvmq.errors import DatabaseError, DatabaseLocked, one_line

DEFAULT_FILENAME = "tvmq.db"
#: seconds a writer waits for another process's write lock before DatabaseLocked
DEFAULT_TIMEOUT_S = 30.0


def default_db_path() -> Path:
    """``$TVMQ_DB`` when set, else ``tvmq.db`` in the current working directory."""
    env = os.environ.get("TVMQ_DB")
    return Path(env) if env else Path.cwd() / DEFAULT_FILENAME


def default_timeout() -> float:
    try:
        return float(os.environ.get("TVMQ_DB_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def resolve_url(url_or_path: str | os.PathLike | None) -> URL:
    """A SQLAlchemy URL from a URL, a file path, or None (the default database)."""
    if url_or_path is None:
        url_or_path = default_db_path()
    text = os.fspath(url_or_path)
    if "://" in text:
        try:
            return make_url(text)
        except sa_exc.ArgumentError:
            raise DatabaseError(f"{text!r} is not a valid database URL or path.") from None
    if not text.strip():
        raise DatabaseError("The database path is empty.")
    path = Path(text).expanduser()
    if path.is_dir():
        raise DatabaseError(f"The database path {path} is a directory, not a file.")
    if not path.parent.is_dir():
        raise DatabaseError(f"Cannot create the database {path}: folder {path.parent} does not exist.")
    return make_url("sqlite:///" + str(path.resolve()))


def describe_url(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return url.render_as_string(hide_password=True)


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def make_engine(url: URL, timeout_s: float) -> Engine:
    """An Engine; for SQLite with WAL, synchronous=FULL, busy timeout and BEGIN IMMEDIATE writes.

    SQLite files are opened in WAL mode with ``synchronous=FULL`` (each commit is on disk when it
    returns), foreign keys on, and a busy timeout. Every write transaction (a connection with the
    ``tvmq_write`` execution option) starts with ``BEGIN IMMEDIATE`` so that a writer takes the
    write lock up front and waits for it under the busy timeout, instead of failing halfway when
    another process committed meanwhile; past the timeout the operation raises
    :class:`~tvmq.errors.DatabaseLocked`.
    """
    try:
        if not is_sqlite(url):
            return create_engine(url, pool_pre_ping=True)
        engine = create_engine(
            url,
            connect_args={"timeout": timeout_s, "check_same_thread": False},
        )
    except (sa_exc.NoSuchModuleError, ImportError):
        raise DatabaseError(
            f"Cannot open database {describe_url(url)}: no SQLAlchemy driver for "
            f"'{url.drivername}' is installed."
        ) from None
    except sa_exc.ArgumentError as err:
        reason = one_line(err, pick="first").rstrip(".")
        raise DatabaseError(f"Cannot open database {describe_url(url)}: {reason}.") from None

    in_memory = url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        # Let SQLAlchemy (through the "begin" hook below) issue BEGIN itself.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            if not in_memory:
                mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        if conn.get_execution_options().get("tvmq_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def _is_lock_error(err: BaseException) -> bool:
    text = str(getattr(err, "orig", err)).lower()
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


@contextlib.contextmanager
def translate_errors(where: str, timeout_s: float) -> Iterator[None]:
    """Turn driver errors into DatabaseLocked / DatabaseError with one clear sentence."""
    try:
        yield
    except sa_exc.SQLAlchemyError as err:
        if isinstance(err, sa_exc.OperationalError) and _is_lock_error(err):
            raise DatabaseLocked(
                f"The tuning database {where} stayed locked by another process for more than "
                f"{timeout_s:g} s; wait for the other tvmq command to finish (or raise "
                "TVMQ_DB_TIMEOUT) and try again."
            ) from None
        # the driver's own message (err.orig) rather than SQLAlchemy's wrapping with the SQL
        reason = one_line(getattr(err, "orig", None) or err, pick="first").rstrip(".")
        if isinstance(err, sa_exc.DBAPIError):
            raise DatabaseError(f"Cannot use the tuning database {where}: {reason}.") from None
        raise DatabaseError(f"The tuning database {where} failed: {reason}.") from None
