"""A tenant's migration state row (app/repositories/migration_state/state.py): verified only
by compare-and-set on the drift generation, the canonical and contracted stamps, and a held
verified state that a drift must wait for."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from app.core.database import quoted_schema, tenant_schema
from app.repositories import migration_state
from tests.repositories.test_backups import stamps

SUMMARY = '{"is_verified": true}'


def test_marking_verified_is_a_compare_and_set_on_the_drift_generation(
    engine: Engine, tenant: int
) -> None:
    schema = quoted_schema(tenant_schema(tenant))
    with engine.begin() as connection:
        seen = migration_state.drift_generation(connection, schema)
        assert migration_state.mark_verified(
            connection, schema, seen_generation=seen, summary=SUMMARY
        )
        # A verify's snapshot saw `seen`; a drift lands before it marks the tenant verified.
        assert migration_state.record_drift(connection, schema, "a write dropped a row")
        assert not migration_state.record_drift(connection, schema, "again"), "already not"
        assert not migration_state.mark_verified(
            connection, schema, seen_generation=seen, summary=SUMMARY
        ), "a drift since the snapshot: nothing written"
        assert migration_state.verified_at(connection, schema) is None
        moved = migration_state.drift_generation(connection, schema)
        assert moved == seen + 2, "every drift moves the generation on, verified or not"
        assert migration_state.mark_verified(
            connection, schema, seen_generation=moved, summary=SUMMARY
        )
        assert migration_state.is_verified(connection, schema)
        assert migration_state.drift(connection, schema).reason == "again"


def test_a_held_verified_state_makes_a_drift_wait(engine: Engine, tenant: int) -> None:
    schema = quoted_schema(tenant_schema(tenant))
    with engine.begin() as connection:
        seen = migration_state.drift_generation(connection, schema)
        migration_state.mark_verified(connection, schema, seen_generation=seen, summary=SUMMARY)
    with engine.connect() as holder:
        assert migration_state.is_verified(holder, schema, hold=True)

        def drift() -> None:
            with engine.begin() as other:
                other.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
                migration_state.record_drift(other, schema, "kill switch")

        with ThreadPoolExecutor(1) as pool, pytest.raises(OperationalError, match="lock"):
            pool.submit(drift).result(timeout=30)
        holder.rollback()
    with engine.begin() as connection:
        assert migration_state.is_verified(connection, schema), "the drift did not land"


def test_the_canonical_and_contracted_stamps(engine: Engine, tenant: int) -> None:
    schema = quoted_schema(tenant_schema(tenant))
    with engine.begin() as connection:
        migration_state.mark_canonical(connection, schema)
        migration_state.mark_contracted(connection, schema, contracted=True)
    assert stamps(engine, schema) == (True, True)
    with engine.begin() as connection:
        migration_state.clear_canonical(connection, schema)
        migration_state.mark_contracted(connection, schema, contracted=False)
    assert stamps(engine, schema) == (False, False)
