"""contract: drop products.images (guarded, backed up, reversible)

Revision ID: c001
Revises:
Create Date: 2026-11-25

Applied on purpose, per tenant: `alembic -n contract -x tenant=N upgrade head` (or
`python -m backfill contract --tenant N`), never by the routine `alembic upgrade head`.
In the tenant's own transaction (backfill/contract.py `check_contract`): refuse when long
transactions hold its tables or the tenant is not verified; re-run the verification's
comparison (refuse on drift); refuse unless every product's JSONB is exactly what the table
rebuilds (so the downgrade gives the same JSONB back); copy `products.id, images` into
image_backups. All without blocking anyone; then take ACCESS EXCLUSIVE on products (within
lock_timeout, retried), check the verified state and the recent writes again, refresh the
backup, and drop the column (a catalog change: no rewrite).

The downgrade re-adds the column (a constant default: no rewrite), rebuilds every product's
JSONB from its rows in batches with every key, and checks the counts.
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from app.repositories import migration_state
from backfill.contract import check_contract, rebuild_column
from migrations.scope import tenant_schema

revision: str = "c001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _schema() -> str:
    bind = op.get_bind()
    return f'"{bind.dialect.default_schema_name}"'


@tenant_schema
def upgrade() -> None:
    bind = op.get_bind()
    schema = _schema()
    check_contract(bind, schema)
    # The safety net's triggers watch the column: they go with it, and come back with it.
    migration_state.remove_triggers(bind, schema)
    op.drop_column("products", "images")
    bind.execute(
        text(
            f"UPDATE {schema}.image_migration_state SET contracted_at = now(), "
            "updated_at = now() WHERE id = 1"
        )
    )


@tenant_schema
def downgrade() -> None:
    bind = op.get_bind()
    schema = _schema()
    bind.execute(
        text(f"ALTER TABLE {schema}.products ADD COLUMN images jsonb NOT NULL DEFAULT '[]'")
    )
    rebuild_column(bind, schema)
    if migration_state.has_safety_net(bind, schema):
        migration_state.install_triggers(bind, schema)
    bind.execute(
        text(
            f"UPDATE {schema}.image_migration_state SET contracted_at = NULL, "
            "updated_at = now() WHERE id = 1"
        )
    )
