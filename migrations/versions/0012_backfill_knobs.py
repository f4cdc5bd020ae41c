"""backfill knobs: rate and batch size changed while a run goes

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

`public.backfill_knobs`: one row for every tenant (`scope = 'all'`) and/or one per tenant
(its id), each with an optional `max_rate` (images per second) and `batch_size`. A running
backfill reads them between batches (`backfill/knobs.py`), a tenant's own value winning over
the `all` one; `python -m backfill tune` writes them. A new, small table: no lock on a busy
one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.scope import public_schema

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@public_schema
def upgrade() -> None:
    op.create_table(
        "backfill_knobs",
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("max_rate", sa.Float),
        sa.Column("batch_size", sa.Integer),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", name="pk_backfill_knobs"),
        sa.CheckConstraint("scope = 'all' OR scope ~ '^[1-9][0-9]*$'", name="ck_knobs_scope"),
        sa.CheckConstraint(
            "max_rate > 0 AND max_rate < 'Infinity'::float8", name="ck_knobs_max_rate"
        ),
        sa.CheckConstraint("batch_size BETWEEN 1 AND 100000", name="ck_knobs_batch_size"),
    )


@public_schema
def downgrade() -> None:
    op.drop_table("backfill_knobs")
