"""Refusals of the routine history's downgrades: a downgrade never destroys the only copy
of anything.

A refusal raises inside the tenant's transaction, so the whole schema rolls back to where
it was; env.py reports it with the others' results and exits non-zero.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

from app.core.database import quoted_schema, tenant_id_of

DISCARD_BACKUPS_KEY = "discard_backups"


class DowngradeRefused(RuntimeError):
    """The downgrade would destroy data that exists nowhere else."""


def _schema() -> str:
    return str(op.get_bind().dialect.default_schema_name)


def _has_images_column() -> bool:
    return bool(
        op.get_bind()
        .execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns "
                "WHERE table_schema = :schema AND table_name = 'products' "
                "AND column_name = 'images')"
            ),
            {"schema": _schema()},
        )
        .scalar_one()
    )


def refuse_if_contracted(dropping: str) -> None:
    """A contracted tenant has no `products.images`: its table is its only copy of images
    and its migration state says so; the contract history must be undone first."""
    if _has_images_column():
        return
    schema = _schema()
    tenant = tenant_id_of(schema)
    raise DowngradeRefused(
        f"{schema} is contracted: products.images is gone and {dropping} holds what exists "
        f"nowhere else; run `python -m backfill uncontract --tenant {tenant}` first"
    )


def refuse_to_drop_backups() -> None:
    """Backups are the restore points of canonicalize and contract: dropped on purpose only."""
    bind = op.get_bind()
    if bind.info.get(DISCARD_BACKUPS_KEY):
        return
    schema = _schema()
    backups = bind.execute(
        text(f"SELECT count(*) FROM {quoted_schema(schema)}.image_backups")
    ).scalar_one()
    if backups:
        tenant = tenant_id_of(schema)
        raise DowngradeRefused(
            f"{schema} holds {backups} backup(s) (`python -m backfill backups --tenant "
            f"{tenant}`) that this downgrade would drop; keep what you need elsewhere, then "
            "rerun with `-x discard_backups=true`"
        )


def refuse_to_drop_products() -> None:
    """The baseline's downgrade would drop the tenant's catalogue."""
    schema = _schema()
    products = (
        op.get_bind()
        .execute(text(f"SELECT count(*) FROM {quoted_schema(schema)}.products"))
        .scalar_one()
    )
    if products:
        raise DowngradeRefused(
            f"{schema} has {products} product(s): the baseline's downgrade would drop the "
            "catalogue; it only undoes an empty tenant"
        )
