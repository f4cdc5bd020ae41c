"""A tenant's backups of `products.images` (app/repositories/migration_state/backups.py):
byte for byte, counted, brought up to date under the contract's lock, and dropped."""

from __future__ import annotations

from sqlalchemy import Engine, text

from app.core.database import quoted_schema, tenant_schema
from app.repositories.migration_state import backups
from tests.images_db import insert_legacy_product


def stamps(engine: Engine, schema: str) -> tuple[bool, bool]:
    """(canonical, contracted) as the tenant's state row says."""
    with engine.connect() as connection:
        row = connection.execute(
            text(f"SELECT canonical_at, contracted_at FROM {schema}.image_migration_state")
        ).one()
    return row.canonical_at is not None, row.contracted_at is not None


def backed_up(engine: Engine, schema: str, backup_id: int) -> dict[int, str]:
    with engine.connect() as connection:
        return {
            int(r.product_id): str(r.images)
            for r in connection.execute(
                text(
                    f"SELECT product_id, images::text AS images FROM {schema}.image_backup_rows "
                    "WHERE backup_id = :id"
                ),
                {"id": backup_id},
            )
        }


def test_a_backup_copies_every_product_and_counts_its_elements(engine: Engine, tenant: int) -> None:
    schema = quoted_schema(tenant_schema(tenant))
    first = insert_legacy_product(engine, tenant, [{"url": "a.jpg"}, {"url": "b.jpg"}])
    broken = insert_legacy_product(engine, tenant, {"url": "not an array"})
    with engine.begin() as connection:
        taken = backups.take(connection, schema, "on demand")
    assert (taken.reason, taken.products, taken.elements) == ("on demand", 2, 3)
    with engine.connect() as connection:
        assert backups.listed(connection, schema) == [taken]
        assert backups.exists(connection, schema, taken.id)
        assert not backups.exists(connection, schema, taken.id + 1)
    copies = backed_up(engine, schema, taken.id)
    assert set(copies) == {first, broken}
    assert copies[broken] == '{"url": "not an array"}'


def test_a_refresh_brings_the_backup_up_to_the_products_written_since(
    engine: Engine, tenant: int
) -> None:
    schema = quoted_schema(tenant_schema(tenant))
    kept = insert_legacy_product(engine, tenant, [{"url": "a.jpg"}])
    gone = insert_legacy_product(engine, tenant, [{"url": "b.jpg"}])
    with engine.begin() as connection:
        taken = backups.take(connection, schema, "before contract")
        since = connection.execute(text("SELECT clock_timestamp()")).scalar_one().isoformat()
    new = insert_legacy_product(engine, tenant, [{"url": "c.jpg"}, {"url": "d.jpg"}])
    with engine.begin() as connection:
        connection.execute(text(f"DELETE FROM {schema}.products WHERE id = :id"), {"id": gone})
        # Changed behind the refresh's back without touching updated_at: not re-copied.
        connection.execute(
            text(f"UPDATE {schema}.products SET images = '[]' WHERE id = :id"), {"id": kept}
        )
        refreshed = backups.refresh(connection, schema, taken, since=since)
    assert (refreshed.id, refreshed.products, refreshed.elements) == (taken.id, 2, 3)
    copies = backed_up(engine, schema, taken.id)
    assert set(copies) == {kept, new}
    assert copies[kept] != "[]", "only products written since `since` are copied again"


def test_a_dropped_backup_is_gone_and_dropping_it_again_says_so(
    engine: Engine, tenant: int
) -> None:
    schema = quoted_schema(tenant_schema(tenant))
    insert_legacy_product(engine, tenant, [{"url": "a.jpg"}])
    with engine.begin() as connection:
        taken = backups.take(connection, schema, "on demand")
    with engine.begin() as connection:
        assert backups.delete(connection, schema, taken.id)
        assert not backups.delete(connection, schema, taken.id)
        assert backups.listed(connection, schema) == []
    assert backed_up(engine, schema, taken.id) == {}
