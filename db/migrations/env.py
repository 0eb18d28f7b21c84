"""Alembic's environment for tvmq: runs the migrations on the connection that :mod:`tvmq.db.schema` hands over."""

from alembic import context

if context.is_offline_mode():
    raise RuntimeError("tvmq's migrations run online only, on the connection tvmq.db.schema gives them.")

context.configure(connection=context.config.attributes["connection"], target_metadata=None,
                  render_as_batch=True)  # SQLite alters tables by copying them
with context.begin_transaction():
    context.run_migrations()
