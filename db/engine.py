"""Opening the database: URL handling, SQLite durability settings, locking and error translation."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url

from tvmq.errors import DatabaseError, DatabaseLocked, one_line
from tvmq.redact import redact_text, redact_url

DEFAULT_FILENAME = "tvmq.db"
#: seconds a writer waits for another process's write lock before DatabaseLocked
DEFAULT_TIMEOUT_S = 30.0


def default_location() -> str:
    """``$TVMQ_DB`` as it is written (a file path or a SQLAlchemy URL) when set, else ``tvmq.db``
    in the current working directory."""
    return os.environ.get("TVMQ_DB") or str(Path.cwd() / DEFAULT_FILENAME)


def default_db_path() -> Path:
    """:func:`default_location` as a path (for a URL in ``$TVMQ_DB``, use :func:`resolve_url`)."""
    return Path(default_location())


def default_timeout() -> float:
    try:
        return float(os.environ.get("TVMQ_DB_TIMEOUT", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def resolve_url(url_or_path: str | os.PathLike | None) -> URL:
    """A SQLAlchemy URL from a URL, a file path, or None (the default database)."""
    text = os.fspath(default_location() if url_or_path is None else url_or_path)
    if "://" in text:
        try:
            return make_url(text)
        except (sa_exc.ArgumentError, ValueError) as err:  # ValueError: a port that is not a number
            reason = redact_text(one_line(err, pick="first")).rstrip(".")
            raise DatabaseError(f"{redact_url(text)!r} is not a valid database URL or path ({reason}).") from None
    if not text.strip():
        raise DatabaseError("The database path is empty.")
    path = Path(text).expanduser()
    if path.is_dir():
        raise DatabaseError(f"The database path {path} is a directory, not a file.")
    if not path.parent.is_dir():
        raise DatabaseError(f"Cannot create the database {path}: folder {path.parent} does not exist.")
    return make_url("sqlite:///" + str(path.resolve()))


def describe_url(url: URL) -> str:
    """How messages name a database: a SQLite file by its path, a server by its URL without user,
    password or query string."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return redact_url(url.render_as_string(hide_password=False))


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
            engine = create_engine(url, pool_pre_ping=True)
            if url.get_backend_name() == "postgresql":
                _one_writer_at_a_time(engine, timeout_s)
            return engine
        engine = create_engine(
            url,
            connect_args={"timeout": timeout_s, "check_same_thread": False},
        )
    except (sa_exc.NoSuchModuleError, ImportError):
        raise DatabaseError(
            f"Cannot open database {describe_url(url)}: no SQLAlchemy driver for "
            f"'{url.drivername}' is installed."
        ) from None
    except (sa_exc.ArgumentError, ValueError, TypeError) as err:  # e.g. a query argument the driver rejects
        reason = redact_text(one_line(err, pick="first")).rstrip(".")
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
                _switch_to_wal(cur, timeout_s)
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


def _switch_to_wal(cur, timeout_s: float) -> None:  # noqa: ANN001 - a sqlite3 cursor
    """Put a SQLite file in WAL mode (a no-op once it is), waiting for other connections.

    SQLite answers ``PRAGMA journal_mode = WAL`` with "database is locked" at once, without the
    busy timeout, while another connection has the file open in rollback mode: two tuners that
    create the same new database together. The switch is retried here, up to ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    pause = 0.002
    while True:
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            if str(cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower() == "wal":
                return
        except sqlite3.OperationalError as err:
            if not _is_lock_error(err):
                raise
        if time.monotonic() >= deadline:
            raise sqlite3.OperationalError("database is locked")
        time.sleep(pause)
        pause = min(2 * pause, 0.05)


#: the PostgreSQL advisory lock that tvmq's write transactions take (any number; tvmq's own)
POSTGRES_WRITE_LOCK = 0x74766D71  # "tvmq"


def _one_writer_at_a_time(engine: Engine, timeout_s: float) -> None:
    """PostgreSQL: every write transaction first takes one advisory lock, waiting at most
    ``timeout_s``, so that writers follow each other as on SQLite (two tuners adding the same
    workload find it instead of colliding on its unique key)."""

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        if conn.get_execution_options().get("tvmq_write"):
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(1, int(timeout_s * 1000))}")
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({POSTGRES_WRITE_LOCK})")


def _is_lock_error(err: BaseException) -> bool:
    text = str(getattr(err, "orig", err)).lower()
    return ("database is locked" in text or "database is busy" in text or "database table is locked" in text
            or "lock timeout" in text)  # PostgreSQL: "canceling statement due to lock timeout"


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
        reason = redact_text(one_line(getattr(err, "orig", None) or err, pick="first")).rstrip(".")
        if isinstance(err, sa_exc.DBAPIError):
            raise DatabaseError(f"Cannot use the tuning database {where}: {reason}.") from None
        raise DatabaseError(f"The tuning database {where} failed: {reason}.") from None


def check_location(url_or_path: str | os.PathLike | None) -> URL:
    """Check a database location before any work starts, without creating or changing anything:
    the URL or path is resolved and its driver loaded, and a server is connected to once.

    Raises :class:`~tvmq.errors.DatabaseError` (one sentence, no secret in it) for a malformed
    URL, a path that cannot be a database, a driver that is not installed or a server that
    cannot be reached. Returns the resolved URL.
    """
    url = resolve_url(url_or_path)
    timeout_s = default_timeout()
    engine = make_engine(url, timeout_s)
    try:
        if not is_sqlite(url):
            with translate_errors(describe_url(url), timeout_s), engine.connect():
                pass
    finally:
        engine.dispose()
    return url
