"""backfill state: runs with their checkpoint, deferred products, verification state

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

Per tenant, inside the tenant's own schema (no cross-schema state: each schema can live on
its own Citus node). Three small new tables; nothing rewritten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.guards import refuse_if_contracted
from migrations.scope import tenant_schema

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@tenant_schema
def upgrade() -> None:
    op.create_table(
        "backfill_runs",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("worker", sa.Text, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False, server_default=sa.false()),
        # Keyset position: every product with id <= checkpoint has been handled (or deferred).
        sa.Column("checkpoint", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("products_scanned", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("products_migrated", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("images_inserted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rejected", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("deferred", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("batches", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lock_timeouts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("batch_size", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_backfill_runs"),
        sa.CheckConstraint(
            "status IN ('running', 'interrupted', 'done', 'failed')",
            name="ck_backfill_runs_status_known",
        ),
    )
    op.create_table(
        "backfill_deferred",
        sa.Column("product_id", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column(
            "deferred_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("product_id", name="pk_backfill_deferred"),
    )
    op.create_table(
        "image_migration_state",
        sa.Column("id", sa.SmallInteger, nullable=False, server_default="1"),
        sa.Column("verified_at", sa.DateTime(timezone=True)),
        sa.Column("verification", JSONB),
        sa.Column("drift_found_at", sa.DateTime(timezone=True)),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_image_migration_state"),
        sa.CheckConstraint("id = 1", name="ck_image_migration_state_single_row"),
    )
    op.execute("INSERT INTO image_migration_state (id) VALUES (1)")


@tenant_schema
def downgrade() -> None:
    refuse_if_contracted("its migration state")
    op.drop_table("image_migration_state")
    op.drop_table("backfill_deferred")
    op.drop_table("backfill_runs")
