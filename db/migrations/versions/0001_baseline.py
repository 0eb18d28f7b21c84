"""Schema 1, the tables tvmq wrote before it had migrations.

A database from then (``tvmq_meta.schema_version`` 1, no ``alembic_version``) runs this too:
tables that exist are left as they are, so it only adds the Alembic bookkeeping.

Revision ID: 0001
Revises: (none)
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> dict[str, tuple[list, list[tuple[str, list[str]]]]]:
    """Table name -> (columns and constraints, [(index name, columns)]), as schema 1 created them."""
    return {
        "tvmq_meta": ([
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        ], []),
        "workloads": ([
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("shash_structural", sa.String(24), nullable=False),
            sa.Column("shash_ignore_tensor", sa.String(24), nullable=False),
            sa.Column("shash_anchor_block", sa.String(24), nullable=False),
            sa.Column("hash_tvm_version", sa.String(40), nullable=False),
            sa.Column("mod_json", sa.Text, nullable=False),
            sa.Column("mod_sha256", sa.String(64), nullable=False, unique=True),
            sa.Column("created_at", sa.DateTime, nullable=False),
        ], [("ix_workloads_shash_structural", ["shash_structural"]),
            ("ix_workloads_shash_ignore_tensor", ["shash_ignore_tensor"]),
            ("ix_workloads_shash_anchor_block", ["shash_anchor_block"])]),
        "tuning_sessions": ([
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("uuid", sa.String(36), nullable=False, unique=True),
            sa.Column("model_sha256", sa.String(64)),
            sa.Column("model_name", sa.String(300)),
            sa.Column("target_profile", sa.String(100)),
            sa.Column("target_json", sa.Text),
            sa.Column("target_key", sa.String(120)),
            sa.Column("tvm_version", sa.String(40)),
            sa.Column("host_name", sa.String(200)),
            sa.Column("host_cpu", sa.String(300)),
            sa.Column("trials_requested", sa.Integer),
            sa.Column("trials_done", sa.Integer, nullable=False),
            sa.Column("started_at", sa.DateTime, nullable=False),
            sa.Column("ended_at", sa.DateTime),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("note", sa.Text),
            sa.CheckConstraint("status IN ('running', 'finished', 'interrupted', 'failed')",
                               name="ck_session_status"),
        ], [("ix_tuning_sessions_model_sha256", ["model_sha256"])]),
        "tuning_records": ([
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("workload_id", sa.Integer, sa.ForeignKey("workloads.id", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("session_id", sa.Integer, sa.ForeignKey("tuning_sessions.id", ondelete="SET NULL")),
            sa.Column("target_key", sa.String(120), nullable=False),
            sa.Column("target_json", sa.Text, nullable=False),
            sa.Column("trace_json", sa.Text, nullable=False),
            sa.Column("run_secs_json", sa.Text),
            sa.Column("mean_run_secs", sa.Float),
            sa.Column("args_info_json", sa.Text),
            sa.Column("record_sha256", sa.String(64), nullable=False),
            sa.Column("created_at", sa.DateTime, nullable=False),
        ], [("ix_tuning_records_session_id", ["session_id"]),
            ("ix_tuning_records_workload_id", ["workload_id"]),
            ("ix_tuning_records_record_sha256", ["record_sha256"]),
            ("ix_records_lookup", ["workload_id", "target_key", "mean_run_secs"])]),
    }


def upgrade() -> None:
    have = set(sa.inspect(op.get_bind()).get_table_names())
    for name, (columns, indexes) in _tables().items():
        if name in have:
            continue
        op.create_table(name, *columns)
        for index, cols in indexes:
            op.create_index(index, name, cols)
    meta = sa.table("tvmq_meta", sa.column("key", sa.String), sa.column("value", sa.Text))
    if op.get_bind().execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).scalar() is None:
        op.bulk_insert(meta, [{"key": "schema_version", "value": "1"}])


def downgrade() -> None:
    for name in reversed(list(_tables())):
        op.drop_table(name)
