"""Session heartbeats: ``tuning_sessions.heartbeat_at``, the last sign of life of a running session.

Sessions from before have their end (or their start) as their last heartbeat, so that one left
"running" by a killed tvmq shows as stale.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tuning_sessions") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime))
    sessions = sa.table("tuning_sessions", sa.column("heartbeat_at", sa.DateTime),
                        sa.column("started_at", sa.DateTime), sa.column("ended_at", sa.DateTime))
    op.execute(sessions.update().values(
        heartbeat_at=sa.func.coalesce(sessions.c.ended_at, sessions.c.started_at)))


def downgrade() -> None:
    with op.batch_alter_table("tuning_sessions") as batch:
        batch.drop_column("heartbeat_at")
