"""image backups: copies of products.images taken before the steps that rewrite or drop it

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25

Per tenant: `image_backups` (one row per copy: when, why, how many products and elements)
and `image_backup_rows` (the copied `products.id, images`, byte for byte), plus
`image_migration_state.canonical_at` / `contracted_at`. New tables and nullable columns
only: nothing rewritten, no long lock.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.guards import refuse_if_contracted, refuse_to_drop_backups
from migrations.scope import tenant_schema

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@tenant_schema
def upgrade() -> None:
    op.create_table(
        "image_backups",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("products", sa.BigInteger, nullable=False),
        sa.Column("elements", sa.BigInteger, nullable=False),
        sa.Column(
            "taken_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_image_backups"),
    )
    op.create_table(
        "image_backup_rows",
        sa.Column("backup_id", sa.BigInteger, nullable=False),
        sa.Column("product_id", sa.BigInteger, nullable=False),
        sa.Column("images", JSONB),
        sa.PrimaryKeyConstraint("backup_id", "product_id", name="pk_image_backup_rows"),
        sa.ForeignKeyConstraint(
            ["backup_id"],
            ["image_backups.id"],
            name="fk_image_backup_rows_backup",
            ondelete="CASCADE",
        ),
    )
    op.add_column("image_migration_state", sa.Column("canonical_at", sa.DateTime(timezone=True)))
    op.add_column("image_migration_state", sa.Column("contracted_at", sa.DateTime(timezone=True)))


@tenant_schema
def downgrade() -> None:
    refuse_if_contracted("its backups")
    refuse_to_drop_backups()
    op.drop_column("image_migration_state", "contracted_at")
    op.drop_column("image_migration_state", "canonical_at")
    op.drop_table("image_backup_rows")
    op.drop_table("image_backups")
