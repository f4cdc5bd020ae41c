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

The downgrade (backfill/contract.py `uncontract`) gives the column back without holding the
tenant: a staging column `images_rebuilding`, added nullable (catalogue only) with triggers
that keep it in step with the rows, filled in batches that each commit on a connection of
their own (the tenant stays contracted meanwhile: `products.images` does not exist), proved
NOT NULL by a CHECK validated without blocking; then, in this migration's transaction, under
a brief ACCESS EXCLUSIVE, renamed `images`, so the switch commits with the version table. An
interrupted downgrade leaves the staging column (the tenant still contracted, still served
from the table) and a rerun resumes from it.
"""

from collections.abc import Sequence

from alembic import op

from app.repositories import migration_state
from backfill.contract import check_contract
from backfill.uncontract import uncontract
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
    migration_state.mark_contracted(bind, schema, contracted=True)


@tenant_schema
def downgrade() -> None:
    uncontract(op.get_bind(), _schema())
