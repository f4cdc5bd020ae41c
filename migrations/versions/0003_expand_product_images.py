"""expand: product_images and the rejected-elements report, in every tenant schema

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Online-safe: two new tables, nothing rewritten. The foreign key takes a brief SHARE ROW
EXCLUSIVE lock on `products` (validation is instant: the new table is empty); env.py's
short lock_timeout and retries keep it from queueing behind traffic.

The API's limits on alt text (500 characters) and tags (20) are not table constraints on
purpose: history migrated from the JSONB must land whatever it holds (nothing lost), and
new input is checked at the edge.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from migrations.guards import refuse_if_contracted
from migrations.scope import tenant_schema

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@tenant_schema
def upgrade() -> None:
    op.create_table(
        "product_images",
        sa.Column("id", UUID(as_uuid=True), nullable=False),
        sa.Column("product_id", sa.BigInteger, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("order", sa.Integer, nullable=False),
        sa.Column("is_label", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("alt_text", sa.Text),
        sa.Column("tags", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'::text[]")),
        sa.Column("mime_type", sa.Text),
        sa.Column("file_size", sa.BigInteger),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_product_images"),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name="fk_product_images_product_id_products",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "product_id", "order", name="uq_product_images_product_order", deferrable=True
        ),
        sa.CheckConstraint('"order" >= 0', name="ck_product_images_order_not_negative"),
        sa.CheckConstraint("file_size >= 0", name="ck_product_images_file_size_not_negative"),
        sa.CheckConstraint(
            "width > 0 AND height > 0", name="ck_product_images_dimensions_positive"
        ),
    )
    op.create_index(
        "uq_product_images_one_label",
        "product_images",
        ["product_id"],
        unique=True,
        postgresql_where=sa.text("is_label"),
    )
    op.create_index("ix_product_images_tags", "product_images", ["tags"], postgresql_using="gin")
    op.create_table(
        "rejected_image_elements",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("product_id", sa.BigInteger, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("raw", JSONB),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("found_by", sa.Text, nullable=False),
        sa.Column(
            "recorded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rejected_image_elements"),
        sa.UniqueConstraint("product_id", "position", name="uq_rejected_image_elements_position"),
    )


@tenant_schema
def downgrade() -> None:
    refuse_if_contracted("product_images")
    op.drop_table("rejected_image_elements")
    op.drop_table("product_images")
