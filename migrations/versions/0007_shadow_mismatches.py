"""shadow mismatches: a bounded sample of what the shadow reads found

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

Per tenant: one small new table (the read router keeps its latest mismatches there, so
`flags mismatches` can show and replay them). Nothing rewritten, no lock on a busy table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.scope import tenant_schema

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@tenant_schema
def upgrade() -> None:
    op.create_table(
        "shadow_mismatches",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("product_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("read_path", sa.Text, nullable=False),
        sa.Column("jsonb_ids", sa.ARRAY(sa.Text), nullable=False),
        sa.Column("table_ids", sa.ARRAY(sa.Text), nullable=False),
        sa.Column("jsonb_value", JSONB),
        sa.Column("table_value", JSONB, nullable=False),
        sa.Column(
            "found_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_shadow_mismatches"),
    )


@tenant_schema
def downgrade() -> None:
    op.drop_table("shadow_mismatches")
