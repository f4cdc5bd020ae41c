"""image metadata failures: images whose metadata the enrichment could not read

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26

Per tenant: one small new table (`python -m backfill enrich` records there, per image, why
it could not read the type, size and pixels from the stored object; a later success deletes
the row). Nothing rewritten, no lock on a busy table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

from migrations.scope import tenant_schema

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@tenant_schema
def upgrade() -> None:
    op.create_table(
        "image_metadata_failures",
        sa.Column("image_id", UUID(as_uuid=True), nullable=False),
        sa.Column("product_id", sa.BigInteger, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column(
            "last_attempt_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("image_id", name="pk_image_metadata_failures"),
    )


@tenant_schema
def downgrade() -> None:
    op.drop_table("image_metadata_failures")
