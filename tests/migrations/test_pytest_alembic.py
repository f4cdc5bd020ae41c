"""pytest-alembic's built-in tests over the routine history, on a scratch database with one
tenant schema: a single head, upgrade from base to head, every revision down and up again.
(The plugin itself is not loaded: 0.13 breaks on pytest 9; its tests and runner are used as
a library with our own `alembic_runner` fixture.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import pytest_alembic
from pytest_alembic.config import Config as AlembicTestConfig
from pytest_alembic.tests import (  # noqa: F401 (collected by pytest)
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy import Engine, create_engine, make_url, text

from app.core import migrate
from app.core.database import make_engine

TENANT = 1


@pytest.fixture
def scratch_engine(database_url: str) -> Iterator[Engine]:
    server = make_url(database_url)
    name = f"pim_alembic_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(server.set(database=name).render_as_string(hide_password=False))
    yield engine
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def alembic_runner(scratch_engine: Engine) -> Iterator[pytest_alembic.MigrationContext]:
    # Its scratch database has no users: tenant TENANT's schema is migrated all the same.
    config = migrate.alembic_config(
        scratch_engine, tenant_ids=[TENANT], lock_retries=0, allow_unknown_tenants=True
    )
    with pytest_alembic.runner(AlembicTestConfig(alembic_config=config), scratch_engine) as runner:
        yield runner


def test_model_definitions_match_the_migrated_tenant_schema(scratch_engine: Engine) -> None:
    """pytest-alembic's test_model_definitions_match_ddl, for a tenant schema: autogenerate's
    comparison of the models with what the migrations built finds nothing to change."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from app.models import Base

    migrate.upgrade(scratch_engine, tenant_ids=[TENANT], lock_retries=0, allow_unknown_tenants=True)
    tenant_tables = {t.name for t in Base.metadata.sorted_tables if t.schema is None}
    with scratch_engine.connect() as connection:
        connection.execute(text(f"SET search_path TO user_{TENANT}"))
        context = MigrationContext.configure(
            connection,
            opts={
                "include_object": lambda obj, name, kind, reflected, other: (
                    kind != "table" or name in tenant_tables
                ),
                "compare_type": True,
            },
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
