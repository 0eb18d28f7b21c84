"""Creating and upgrading the tables: the Alembic migrations in :mod:`tvmq.db.migrations`, run
programmatically whenever a database is opened (and by ``tvmq-db upgrade``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from tvmq.errors import DatabaseError, one_line

from .models import SCHEMA_VERSION

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: the newest revision in ``migrations/versions`` (a test checks it against Alembic's head), so
#: that opening an up-to-date database needs no Alembic
HEAD = "0002"


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did: the revision before (None: new or pre-migration database) and after."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision according to Alembic's reading of the migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


def _revision(conn: Connection, tables: set[str]) -> str | None:
    if "alembic_version" not in tables:
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _check(conn: Connection, where: str) -> tuple[set[str], str | None]:
    """The tables and revision of a tvmq database; raises for other databases and newer tvmq's."""
    tables = set(inspect(conn).get_table_names())
    if tables and "tvmq_meta" not in tables:
        raise DatabaseError(
            f"{where} is a database but not a tvmq tuning database "
            f"(it has tables {', '.join(sorted(tables)[:5])})."
        )
    version = None
    if "tvmq_meta" in tables:
        version = conn.execute(text("SELECT value FROM tvmq_meta WHERE key = 'schema_version'")).scalar()
    revision = _revision(conn, tables)
    newer = version is not None and int(version) > SCHEMA_VERSION
    if newer or (revision is not None and revision != HEAD and not _known(revision)):
        raise DatabaseError(
            f"{where} was written by a newer tvmq (schema {version}, revision {revision}; this one "
            f"reads schema {SCHEMA_VERSION} up to revision {HEAD}); upgrade tvmq to use it."
        )
    return tables, revision


def _known(revision: str) -> bool:
    from alembic.script import ScriptDirectory

    try:
        ScriptDirectory.from_config(_config()).get_revision(revision)
    except Exception:  # noqa: BLE001 - alembic raises CommandError/ResolutionError subclasses
        return False
    return True


def ensure_schema(engine: Engine, where: str) -> Upgrade:
    """Check that ``engine`` holds a tvmq database (or nothing) and upgrade it to :data:`HEAD`.

    A schema-1 database from before the migrations (``tvmq_meta`` but no ``alembic_version``)
    runs the baseline revision, which only adds the bookkeeping. Alembic is imported only when
    there is something to do.
    """
    with engine.connect() as conn:
        _, revision = _check(conn, where)
    if revision != HEAD:
        return upgrade(engine, where)
    return Upgrade(before=revision, after=revision)


def upgrade(engine: Engine, where: str) -> Upgrade:
    """Run the migrations up to the newest revision, in one write transaction."""
    with engine.connect() as conn:
        conn = conn.execution_options(tvmq_write=True)
        with conn.begin():  # takes the write lock first: a concurrent opener waits, then finds HEAD
            tables, before = _check(conn, where)
            if before != HEAD:
                from alembic import command

                try:
                    command.upgrade(_config(conn), "head")
                except DatabaseError:
                    raise
                except Exception as err:  # noqa: BLE001 - SQLAlchemyError goes to translate_errors
                    if type(err).__module__.startswith("sqlalchemy"):
                        raise
                    raise DatabaseError(f"Cannot upgrade the tuning database {where}: "
                                        f"{one_line(err, pick='last').rstrip('.')}.") from None
            after = _revision(conn, tables | {"alembic_version"})
    return Upgrade(before=before, after=str(after))
