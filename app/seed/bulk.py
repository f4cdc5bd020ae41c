"""Legacy products in bulk, in one statement, for tests, drills and benchmarks: `count`
products of `images_each` JSONB elements each (every fifth from the old pythonApiWOO
importer), written as the history to migrate (not as drift). `python -m app seed` makes the
brief's realistic data; this makes volume."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

from app.core.database import tenant_schema
from app.repositories.migration_state import declare_writer


def insert_legacy_products(
    bind: Engine | Connection,
    tenant: int,
    count: int,
    *,
    images_each: int = 5,
    base: str = "http://testserver/media",
    created_at: str | None = None,
    analyze: bool = False,
) -> None:
    """Products `item 1..count`, price 10, image k of product g at `{base}/{g}/{k}.jpg` with
    order k (and `created_at` on each element when given); ANALYZE after, when asked."""
    if isinstance(bind, Engine):
        with bind.begin() as connection:
            insert_legacy_products(
                connection,
                tenant,
                count,
                images_each=images_each,
                base=base,
                created_at=created_at,
                analyze=analyze,
            )
        return
    schema = tenant_schema(tenant)
    stamp = ", 'created_at', CAST(:created_at AS text)" if created_at is not None else ""
    declare_writer(bind, "history")  # the history to migrate, not drift
    bind.execute(
        text(
            f"INSERT INTO {schema}.products (title, price, source, images) "
            "SELECT 'item ' || g, 10,"
            " CASE WHEN g % 5 = 0 THEN 'pythonApiWOO' ELSE 'stoflow' END,"
            " (SELECT jsonb_agg(jsonb_build_object("
            f"    'url', :base || '/' || g || '/' || k || '.jpg', 'order', k{stamp}))"
            "  FROM generate_series(0, :n - 1) k) "
            "FROM generate_series(1, :count) g"
        ),
        {"base": base, "n": images_each, "count": count, "created_at": created_at},
    )
    if analyze:
        bind.execute(text(f"ANALYZE {schema}.products"))
