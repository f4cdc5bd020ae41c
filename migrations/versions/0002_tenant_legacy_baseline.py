"""tenant legacy baseline: products with the JSONB images column

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

The backend as it is before the migration: each product keeps its pictures in
`images jsonb NOT NULL DEFAULT '[]'` as [{"url", "order", "created_at"}, ...].
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.guards import refuse_to_drop_products
from migrations.scope import tenant_schema

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@tenant_schema
def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("brand", sa.String(100)),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False, server_default="EUR"),
        sa.Column("status", sa.String(16), nullable=False, server_default="draft"),
        sa.Column("source", sa.String(64), nullable=False, server_default="stoflow"),
        sa.Column("images", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_products"),
        sa.CheckConstraint("price >= 0", name="ck_products_price_not_negative"),
        sa.CheckConstraint(
            "status IN ('draft', 'active', 'sold', 'archived')", name="ck_products_status_known"
        ),
    )
    op.create_index("ix_products_source", "products", ["source"])
    op.create_index("ix_products_updated_at", "products", ["updated_at"])


@tenant_schema
def downgrade() -> None:
    refuse_to_drop_products()
    op.drop_table("products")
