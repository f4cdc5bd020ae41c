"""integrity net: drift generation, changed-products log and its triggers, free image ids

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

- `public`: the projection's functions again (a new one, `pim_free_image_id`: a carried id
  always wins, the image that derives it takes the next attempt) and the trigger function
  of the safety net (backfill/sql/safety_net.sql); both re-applied from their files.
- per tenant: `image_migration_state.drift_generation` (a counter every drift moves on;
  verify marks a tenant verified only if it has not moved since its snapshot),
  `changed_products` (products whose `images` were written outside the dual-write), the two
  triggers on `products` that fill it, one on `product_images` that makes a TRUNCATE
  drift, and a rejection report keyed by the element too (two different elements rejected
  at the same position over time are both kept).
Only new objects, a nullable-free column with a constant default (no rewrite) and an index
on the small rejection report; CREATE TRIGGER holds SHARE ROW EXCLUSIVE on `products` for
an instant, within the migration's lock_timeout.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.core.database import quoted_schema
from app.repositories.migration_state import (
    install_triggers,
    install_truncate_trigger,
    remove_triggers,
)
from backfill.projection import sql
from migrations.scope import public_schema, tenant_schema

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@public_schema
def _public_upgrade() -> None:
    bind = op.get_bind()
    bind.exec_driver_sql(sql("functions").replace("%", "%%"))
    bind.exec_driver_sql(sql("safety_net").replace("%", "%%"))


@tenant_schema
def _tenant_upgrade() -> None:
    op.add_column(
        "image_migration_state",
        sa.Column("drift_generation", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "changed_products",
        sa.Column("product_id", sa.BigInteger, nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("writer", sa.Text, nullable=False),
        sa.Column(
            "changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("product_id", name="pk_changed_products"),
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_rejected_image_elements_element ON rejected_image_elements "
        "(product_id, position, md5(coalesce(raw::text, '')))"
    )
    op.drop_constraint(
        "uq_rejected_image_elements_position", "rejected_image_elements", type_="unique"
    )
    bind = op.get_bind()
    install_truncate_trigger(bind, quoted_schema(current_schema(bind)))
    if bind.execute(
        sa.text(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = 'products' AND column_name = 'images')"
        )
    ).scalar():
        install_triggers(bind, quoted_schema(current_schema(bind)))


def current_schema(bind: sa.Connection) -> str:
    return str(bind.execute(sa.text("SELECT current_schema()")).scalar_one())


def upgrade() -> None:
    _public_upgrade()
    _tenant_upgrade()


@tenant_schema
def _tenant_downgrade() -> None:
    remove_triggers(op.get_bind(), quoted_schema(current_schema(op.get_bind())))
    op.execute("DROP TRIGGER IF EXISTS product_images_truncated ON product_images")
    op.create_unique_constraint(
        "uq_rejected_image_elements_position", "rejected_image_elements", ["product_id", "position"]
    )
    op.execute("DROP INDEX uq_rejected_image_elements_element")
    op.drop_table("changed_products")
    op.drop_column("image_migration_state", "drift_generation")


@public_schema
def _public_downgrade() -> None:
    # CASCADE: public may be downgraded before the tenant schemas; their triggers go with
    # the function (each tenant's own downgrade then finds none to drop).
    op.execute("DROP FUNCTION IF EXISTS public.pim_images_written_outside() CASCADE")
    op.execute("DROP FUNCTION IF EXISTS public.pim_images_table_truncated() CASCADE")
    op.execute("DROP FUNCTION IF EXISTS public.pim_free_image_id(bigint, bigint, text, uuid[])")


def downgrade() -> None:
    _tenant_downgrade()
    _public_downgrade()
