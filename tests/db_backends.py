"""The database backends the storage tests run on, as Optuna runs one storage test suite over
every backend: a SQLite file, and a PostgreSQL server when ``$TVMQ_TEST_POSTGRES_URL`` names one
(``.ci/run`` starts one). Each PostgreSQL test gets databases of its own, dropped afterwards.

Tests take the ``db_url`` fixture (one fresh database URL, once per backend) or ``db_urls`` (a
factory of fresh URLs on the same backend, for tests that need several databases).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

BACKENDS = ("sqlite", "postgresql")
POSTGRES_ENV = "TVMQ_TEST_POSTGRES_URL"


def _admin_url() -> URL:
    """The server of ``$TVMQ_TEST_POSTGRES_URL``; skips the test with the reason when there is none."""
    text_url = os.environ.get(POSTGRES_ENV)
    if not text_url:
        pytest.skip(f"no PostgreSQL server: set {POSTGRES_ENV} (e.g. "
                    "postgresql+psycopg://tvmq@127.0.0.1/postgres; .ci/run starts one)")
    reason = _unreachable(text_url)
    if reason:
        pytest.skip(reason)
    return make_url(text_url)


@functools.cache
def _unreachable(text_url: str) -> str | None:
    """Why the server cannot be used (asked once per test run), or None."""
    url = make_url(text_url)
    shown = url.render_as_string(hide_password=True)
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 5})
    except Exception as err:  # noqa: BLE001 - e.g. no driver: the reason is the skip message
        return f"PostgreSQL at {shown} cannot be used: {err}"
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as err:  # noqa: BLE001
        return f"PostgreSQL at {shown} is unreachable: {str(err).splitlines()[0]}"
    finally:
        engine.dispose()
    return None


class PostgresDatabases:
    """Creates databases on the test server and drops them all at :meth:`drop_all`."""

    def __init__(self, admin: URL) -> None:
        self.admin = admin
        self.names: list[str] = []

    def _execute(self, sql: str) -> None:
        engine = create_engine(self.admin, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()

    def create(self) -> str:
        name = f"tvmq_test_{uuid.uuid4().hex[:16]}"
        self._execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return self.admin.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        for name in self.names:  # FORCE: a test may leave connections open (PostgreSQL 13+)
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.names.clear()


@pytest.fixture(params=BACKENDS)
def db_urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty database URLs on one backend (each call: another database)."""
    if request.param == "sqlite":
        count = iter(range(1, 1000))
        yield lambda: f"sqlite:///{tmp_path / f'db{next(count)}.db'}"
        return
    databases = PostgresDatabases(_admin_url())
    try:
        yield databases.create
    finally:
        databases.drop_all()


@pytest.fixture
def db_url(db_urls: Callable[[], str]) -> str:
    """One fresh, empty database URL, once per backend."""
    return db_urls()


def execute(url: str, *statements: str | tuple[str, dict]) -> None:
    """Run SQL statements (text, or ``(text, parameters)``) on ``url`` in one transaction, outside
    tvmq: what a test uses to plant old schemas or broken rows."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for st in statements:
                sql, params = (st, {}) if isinstance(st, str) else st
                conn.execute(text(sql), params)
    finally:
        engine.dispose()


def scalar(url: str, sql: str) -> object:
    """The first column of the first row of a query on ``url``."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()
