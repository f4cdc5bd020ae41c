"""A routine downgrade never destroys the only copy of anything: it refuses a contracted
tenant (its images live only in the table), a tenant's backups (unless discarded on
purpose) and a tenant's catalogue; a refused tenant is left whole and the others move."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from app.core import migrate
from app.core.database import tenant_schema
from app.core.settings import PROJECT_ROOT
from backfill import contract as steps
from backfill.tenants import is_contracted
from migrations.tenancy import TenantMigrationFailed
from tests.backfill.test_contract import ready_tenant
from tests.migrations.test_multi_tenant import HEAD, has_table, revision_of


def count(engine: Engine, tenant: int, table: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(f'SELECT count(*) FROM "{tenant_schema(tenant)}".{table}')
            ).scalar_one()
        )


def test_a_contracted_tenant_refuses_the_expand_downgrade_and_keeps_every_image(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    contracted, plain = ready_tenant(engine, make_tenant, copies=1), make_tenant()
    migrate.contract(engine, tenant_ids=[contracted])
    images = count(engine, contracted, "product_images")
    assert images > 0

    with pytest.raises(TenantMigrationFailed) as refused:
        migrate.downgrade(
            engine, revision="0002", tenant_ids=[contracted, plain], discard_backups=True
        )

    message = str(refused.value)
    assert tenant_schema(contracted) in message and "contracted" in message
    assert f"backfill uncontract --tenant {contracted}" in message, "the way out is named"
    assert tenant_schema(plain) not in message
    assert revision_of(engine, tenant_schema(contracted)) == HEAD, "rolled back whole"
    assert is_contracted(engine, contracted)
    assert count(engine, contracted, "product_images") == images
    assert steps.list_backups(engine, contracted), "its backups too"
    assert revision_of(engine, tenant_schema(plain)) == "0002", "the others move"


def test_backups_are_dropped_only_on_purpose(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = ready_tenant(engine, make_tenant, copies=1)  # canonicalize took a backup
    backups = steps.list_backups(engine, tenant)
    assert backups

    with pytest.raises(TenantMigrationFailed) as refused:
        migrate.downgrade(engine, revision="0002", tenant_ids=[tenant])
    assert f"{len(backups)} backup(s)" in str(refused.value)
    assert "discard_backups=true" in str(refused.value)
    assert revision_of(engine, tenant_schema(tenant)) == HEAD
    assert steps.list_backups(engine, tenant) == backups

    migrate.downgrade(engine, revision="0002", tenant_ids=[tenant], discard_backups=True)
    assert revision_of(engine, tenant_schema(tenant)) == "0002"
    assert not has_table(engine, tenant_schema(tenant), "product_images")
    migrate.upgrade(engine, tenant_ids=[tenant])


def test_the_baseline_downgrade_refuses_a_tenant_with_products(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = ready_tenant(engine, make_tenant, copies=1)
    products = count(engine, tenant, "products")
    with pytest.raises(TenantMigrationFailed, match=f"{products} product"):
        migrate.downgrade(engine, revision="0001", tenant_ids=[tenant], discard_backups=True)
    assert revision_of(engine, tenant_schema(tenant)) == HEAD
    assert count(engine, tenant, "products") == products


def test_the_documented_command_exits_non_zero_on_a_contracted_tenant(
    engine: Engine, make_tenant: Callable[[], int], database_url: str
) -> None:
    tenant = ready_tenant(engine, make_tenant, copies=1)
    migrate.contract(engine, tenant_ids=[tenant])
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"tenant={tenant}", "downgrade", "0002"],
        cwd=PROJECT_ROOT,
        env={"DATABASE_URL": database_url, "PATH": "/usr/bin:/bin", "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "uncontract" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr, "a refusal, not a crash"
    assert is_contracted(engine, tenant)
    assert revision_of(engine, tenant_schema(tenant)) == HEAD


def test_an_upgrade_of_a_tenant_that_does_not_exist_builds_no_schema(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    real = make_tenant()
    missing = real + 1_000_000

    with pytest.raises(TenantMigrationFailed, match=f"no tenant with id {missing}"):
        migrate.upgrade(engine, tenant_ids=[real, missing])

    with engine.connect() as connection:
        orphan = connection.execute(
            text("SELECT to_regnamespace(:schema)"), {"schema": tenant_schema(missing)}
        ).scalar()
    assert orphan is None, "a mistyped id builds no schema that no tenant owns"


def test_an_upgrade_naming_a_tenant_is_refused_cleanly_on_a_database_never_migrated(
    engine: Engine,
) -> None:
    import uuid

    from sqlalchemy import create_engine

    from app.core.database import make_engine

    name = f"pim_never_{uuid.uuid4().hex[:8]}"
    admin = create_engine(engine.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    empty = make_engine(engine.url.set(database=name).render_as_string(hide_password=False))
    try:
        with pytest.raises(TenantMigrationFailed, match="no tenant with id 7"):
            migrate.upgrade(empty, tenant_ids=[7], lock_retries=0)
        with empty.connect() as connection:  # refused before public was touched
            assert connection.execute(text("SELECT to_regclass('public.users')")).scalar() is None
    finally:
        empty.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
