"""media usage: the bytes each tenant stores, for the upload quota

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10

Per tenant: `media_usage`, one row (the bytes of the tenant's stored objects under `t<id>/`,
and when the sweep last set it to the storage's own count). An upload reserves its bytes
there before storing (`UPDATE ... WHERE bytes + n <= quota`), a removal releases them,
`python -m app sweep-media` reconciles. It starts at 0: the first sweep counts what is
already stored. A new small table and its one row: no lock on a busy table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.scope import tenant_schema

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@tenant_schema
def upgrade() -> None:
    op.create_table(
        "media_usage",
        # One row per tenant schema: the key can only be 1.
        sa.Column("id", sa.SmallInteger, nullable=False, server_default="1"),
        sa.Column("bytes", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("reconciled_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_media_usage"),
        sa.CheckConstraint("id = 1", name="ck_media_usage_one_row"),
        sa.CheckConstraint("bytes >= 0", name="ck_media_usage_bytes_not_negative"),
    )
    op.execute("INSERT INTO media_usage (id, bytes) VALUES (1, 0)")


@tenant_schema
def downgrade() -> None:
    op.drop_table("media_usage")
