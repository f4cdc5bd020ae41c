"""read origin stats: each tenant's image reads per minute, by origin, for the console

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

`public.read_origin_stats`: per tenant, origin (the read path its stage chose: jsonb, table,
shadow) and minute, the reads, the failed ones, the sum of their latencies and a count per
fixed latency bucket (app/core/read_origins.py: LATENCY_BOUNDS, plus one above the last), so
p50/p95/p99 can be estimated over any set of minutes. Every app process adds its own
figures with one upsert every few seconds (app/services/read_origins.py) and deletes what is
older than an hour: a table of at most tenants x 3 x 61 rows. No foreign key to `users`: a
flush must not fail for a tenant deleted meanwhile; its rows age out within the hour. A new,
small table: no lock on a busy one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

from migrations.scope import public_schema

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@public_schema
def upgrade() -> None:
    op.create_table(
        "read_origin_stats",
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("origin", sa.Text, nullable=False),
        sa.Column("reads", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("latency_sum", sa.Float, nullable=False),
        sa.Column("latency_buckets", ARRAY(sa.BigInteger), nullable=False),
        # The tenant page reads one tenant's last hour: the key serves it.
        sa.PrimaryKeyConstraint("tenant_id", "minute", "origin", name="pk_read_origin_stats"),
        sa.CheckConstraint(
            "origin IN ('jsonb', 'table', 'shadow')", name="ck_read_origin_stats_origin"
        ),
        sa.CheckConstraint(
            "errors >= 0 AND errors <= reads", name="ck_read_origin_stats_errors_of_reads"
        ),
        sa.CheckConstraint(
            "minute = date_trunc('minute', minute)", name="ck_read_origin_stats_whole_minute"
        ),
    )
    # The prune deletes by age, across tenants.
    op.create_index("ix_read_origin_stats_minute", "read_origin_stats", ["minute"])


@public_schema
def downgrade() -> None:
    op.drop_table("read_origin_stats")
