"""The multi-tenant Alembic history: every schema its own transaction and version table."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from app.core import migrate
from app.core.database import tenant_schema
from migrations.tenancy import TenantMigrationFailed

HEAD = "0016"


def revision_of(engine: Engine, schema: str) -> str | None:
    with engine.connect() as connection:
        exists = connection.execute(
            text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"{schema}.alembic_version"}
        ).scalar_one()
        if not exists:
            return None
        return connection.execute(
            text(f'SELECT version_num FROM "{schema}".alembic_version')
        ).scalar()


def has_table(engine: Engine, schema: str, table: str) -> bool:
    with engine.connect() as connection:
        return bool(
            connection.execute(
                text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"{schema}.{table}"}
            ).scalar_one()
        )


def test_new_tenant_schema_is_migrated_to_head_with_its_own_version_table(
    engine: Engine, tenant: int
) -> None:
    schema = tenant_schema(tenant)
    assert revision_of(engine, schema) == HEAD
    assert revision_of(engine, "public") == HEAD
    assert has_table(engine, schema, "products")


def test_migrating_through_the_apps_engine_leaves_no_lock_timeout_on_its_pool(
    database_url: str, make_tenant: Callable[[], int]
) -> None:
    # A tenant created through the API migrates with the app's pooled engine; the
    # migration's session-level lock_timeout once followed the connection back into
    # request traffic (a concurrency test hit "canceling statement due to lock timeout").
    from app.core.database import make_engine
    from app.services.tenant_service import create_tenant

    engine = make_engine(database_url, pool_size=1)
    try:
        create_tenant(engine, email=f"pool-{make_tenant()}@example.com")
        with engine.connect() as connection:
            assert connection.execute(text("SHOW lock_timeout")).scalar_one() == "0"
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_one_tenant_leaves_the_others_alone(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    first, second, third = make_tenant(), make_tenant(), make_tenant()

    migrate.downgrade(engine, revision="0001", tenant_ids=[first, second], lock_retries=0)

    assert not has_table(engine, tenant_schema(first), "products")
    assert not has_table(engine, tenant_schema(second), "products")
    assert revision_of(engine, tenant_schema(first)) == "0001"
    assert has_table(engine, tenant_schema(third), "products")
    assert revision_of(engine, tenant_schema(third)) == HEAD
    assert revision_of(engine, "public") == HEAD, "a downgrade never touches public by default"

    migrate.upgrade(engine, tenant_ids=[first, second], lock_retries=0)
    for tenant_id in (first, second, third):
        assert revision_of(engine, tenant_schema(tenant_id)) == HEAD
        assert has_table(engine, tenant_schema(tenant_id), "products")


def test_failure_in_one_tenant_leaves_others_at_head_and_a_rerun_completes(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    good, bad, also_good = make_tenant(), make_tenant(), make_tenant()
    migrate.downgrade(engine, revision="0001", tenant_ids=[good, bad, also_good], lock_retries=0)
    # Inject a failure: an object in the bad tenant's schema that the baseline cannot create over.
    with engine.begin() as connection:
        connection.execute(text(f'CREATE VIEW "{tenant_schema(bad)}".products AS SELECT 1 AS x'))

    with pytest.raises(TenantMigrationFailed) as failure:
        migrate.upgrade(engine, tenant_ids=[good, bad, also_good], lock_retries=0)

    assert tenant_schema(bad) in str(failure.value)
    assert tenant_schema(good) not in str(failure.value)
    assert revision_of(engine, tenant_schema(good)) == HEAD
    assert revision_of(engine, tenant_schema(also_good)) == HEAD
    assert revision_of(engine, tenant_schema(bad)) == "0001", "the failed tenant rolled back whole"

    with engine.begin() as connection:
        connection.execute(text(f'DROP VIEW "{tenant_schema(bad)}".products'))
    migrate.upgrade(engine, tenant_ids=[good, bad, also_good], lock_retries=0)
    assert revision_of(engine, tenant_schema(bad)) == HEAD


def test_lock_timeout_is_retried_with_backoff_then_names_the_blocking_session(
    engine: Engine, tenant: int
) -> None:
    schema = tenant_schema(tenant)
    migrate.downgrade(engine, revision="0001", tenant_ids=[tenant], lock_retries=0)
    waits: list[float] = []
    blocker = engine.connect()
    try:
        # A long transaction holding a lock the migration needs.
        blocker.execute(text(f'LOCK TABLE "{schema}".alembic_version IN ACCESS EXCLUSIVE MODE'))
        with pytest.raises(TenantMigrationFailed) as failure:
            migrate.upgrade(
                engine, tenant_ids=[tenant], lock_retries=3, lock_timeout_ms=100, sleep=waits.append
            )
    finally:
        blocker.rollback()
        blocker.close()

    message = str(failure.value)
    assert schema in message
    assert "lock timeout after 4 attempt(s)" in message
    assert "pid " in message, "the blocking session is named"
    assert len(waits) == 3
    assert waits[0] < waits[1] < waits[2], "backoff grows"
    migrate.upgrade(engine, tenant_ids=[tenant], lock_retries=0)
    assert revision_of(engine, schema) == HEAD


def test_a_second_migrator_of_the_same_tenant_waits_for_the_first(
    engine: Engine, tenant: int
) -> None:
    schema = tenant_schema(tenant)
    migrate.downgrade(engine, revision="0001", tenant_ids=[tenant], lock_retries=0)
    first_migrator = engine.connect()
    try:
        # What a migrator holds for its whole transaction (see migrations/tenancy.py).
        first_migrator.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"alembic:{schema}"}
        )
        with pytest.raises(TenantMigrationFailed, match="lock timeout"):
            migrate.upgrade(engine, tenant_ids=[tenant], lock_retries=0, lock_timeout_ms=100)
    finally:
        first_migrator.rollback()
        first_migrator.close()
    assert revision_of(engine, schema) == "0001"
