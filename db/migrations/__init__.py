"""Alembic migrations of the tuning database's tables, run by :mod:`tvmq.db.schema` (no alembic.ini)."""
