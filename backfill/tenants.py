"""Which tenants a backfill command works on, and whether their schema is ready for it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Engine, text

from app.core.database import quoted_schema, tenant_schema
from app.core.errors import DomainError

# Owned by the migration state's repository; the backfill commands ask it through here.
from app.repositories.migration_state import BACKFILL_TABLES, is_ready

__all__ = ["BACKFILL_TABLES", "UnknownTenants", "all_tenant_ids", "is_ready", "select_tenants"]


class UnknownTenants(DomainError, ValueError):
    """Some requested tenant ids do not exist."""

    validation = True
    field = "tenant_ids"
    reason = "unknown_tenant"

    def __init__(self, tenant_ids: Sequence[int]) -> None:
        super().__init__(f"no tenant with id {', '.join(map(str, tenant_ids))}")
        self.tenant_ids = tuple(tenant_ids)


def all_tenant_ids(engine: Engine) -> list[int]:
    """Every tenant, by id."""
    with engine.connect() as connection:
        return [
            int(i)
            for i in connection.execute(text("SELECT id FROM public.users ORDER BY id")).scalars()
        ]


def select_tenants(engine: Engine, requested: Sequence[int] | None) -> list[int]:
    """The requested tenants (checked to exist) or all of them."""
    known = all_tenant_ids(engine)
    if not requested:
        return known
    unknown = sorted(set(requested) - set(known))
    if unknown:
        raise UnknownTenants(unknown)
    return sorted(set(requested))


def product_count(engine: Engine, tenant_ids: Sequence[int]) -> int:
    """Products across the given (migrated) tenants: the progress bar's total."""
    total = 0
    with engine.connect() as connection:
        for tenant_id in tenant_ids:
            schema = tenant_schema(tenant_id)
            if connection.execute(
                text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"{schema}.products"}
            ).scalar_one():
                total += int(
                    connection.execute(
                        text(f'SELECT count(*) FROM "{schema}".products')
                    ).scalar_one()
                )
    return total


def has_images_column(connection: Connection, schema: str) -> bool:
    """Whether `products.images` still exists (False: the tenant is contracted)."""
    return bool(
        connection.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(:t) "
                "AND attname = 'images' AND NOT attisdropped)"
            ),
            {"t": f"{schema}.products"},
        ).scalar_one()
    )


def is_contracted(engine: Engine, tenant_id: int) -> bool:
    """The tenant's products have no JSONB column any more."""
    with engine.connect() as connection:
        return not has_images_column(connection, quoted_schema(tenant_schema(tenant_id)))
