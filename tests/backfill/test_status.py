"""`tenant_status` reads many tenants in a few statements: its stage facts agree with
`tenant_facts(session)` (what each request resolves) at every stage, its counts survive the
contract, it pages in order, skips schemas not at head and rereads the catalog when a
tenant is contracted under it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy import Engine, text

from app.core import migrate
from app.core.database import tenant_schema, unit_of_work
from app.repositories.tenant_facts import tenant_facts
from backfill import status as status_module
from backfill.runner import RunOptions, run_tenant
from backfill.status import tenant_status
from backfill.verify import verify_tenant
from tests.backfill.test_contract import ready_tenant
from tests.backfill.test_runner import count, seed


def one(engine: Engine, tenant: int) -> status_module.TenantStatus:
    (found,) = tenant_status(engine, [tenant])
    return found


def test_status_facts_are_the_facts_each_request_reads_at_every_stage(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    legacy = make_tenant()
    seed(engine, legacy)
    backfilled = make_tenant()
    seed(engine, backfilled)
    run_tenant(engine, backfilled, RunOptions())
    verified = make_tenant()
    seed(engine, verified)
    run_tenant(engine, verified, RunOptions())
    assert verify_tenant(engine, verified).is_verified
    contracted = ready_tenant(engine, make_tenant, copies=1)
    migrate.contract(engine, tenant_ids=[contracted])

    tenants = [legacy, backfilled, verified, contracted]
    statuses = tenant_status(engine, tenants)
    assert [s.tenant_id for s in statuses] == tenants
    for status in statuses:
        with unit_of_work(engine, status.tenant_id) as session:
            assert status.facts == tenant_facts(session), status.tenant_id
    seen = [(s.facts.is_backfilled, s.facts.is_verified, s.facts.is_contracted) for s in statuses]
    assert seen == [
        (False, False, False),
        (True, False, False),
        (True, True, False),
        (True, True, True),
    ], "the four tenants are at four different stages"


def test_counts_are_the_same_before_and_after_the_contract(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = ready_tenant(engine, make_tenant, copies=2)
    before = one(engine, tenant)
    assert before.jsonb_images > 0 and before.rejected > 0 and before.labels > 0
    # Canonical (the contract's guard): the JSONB holds exactly the table's rows; the
    # rejected elements were set aside in the canonicalize backup.
    assert before.table_rows == before.jsonb_images

    migrate.contract(engine, tenant_ids=[tenant])
    after = one(engine, tenant)
    assert after.is_contracted and not before.is_contracted
    for name in ("products", "jsonb_images", "table_rows", "rejected", "labels", "verified_at"):
        assert getattr(after, name) == getattr(before, name), name
    assert after.migrated_percent == 100.0


def test_mismatches_count_the_last_hour_only(engine: Engine, tenant: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                f'INSERT INTO "{tenant_schema(tenant)}".shadow_mismatches '
                "(product_id, kind, detail, read_path, jsonb_ids, table_ids, table_value, "
                "found_at) VALUES "
                "(1, 'order', 'd', 'jsonb', '{}', '{}', '[]', now()), "
                "(1, 'order', 'd', 'jsonb', '{}', '{}', '[]', now() - interval '59 minutes'), "
                "(2, 'order', 'd', 'jsonb', '{}', '{}', '[]', now() - interval '2 hours')"
            )
        )
    assert one(engine, tenant).mismatches_last_hour == 2


def test_pages_keep_the_order_asked_and_leave_out_schemas_not_at_head(
    engine: Engine, make_tenant: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(status_module, "PAGE", 2)
    migrated = [make_tenant() for _ in range(5)]
    for index, tenant in enumerate(migrated):
        seed(engine, tenant, copies=index % 2 + 1)
    with engine.begin() as connection:  # a user whose schema was never migrated
        bare = int(
            connection.execute(
                text("INSERT INTO public.users (email) VALUES (:e) RETURNING id"),
                {"e": f"bare-{uuid.uuid4().hex}@example.com"},
            ).scalar_one()
        )
    asked = [migrated[3], bare, migrated[0], migrated[4], migrated[1], migrated[2]]
    statuses = tenant_status(engine, asked)
    assert [s.tenant_id for s in statuses] == [t for t in asked if t != bare]
    assert {s.tenant_id: s.products for s in statuses} == {
        t: count(engine, t, "products") for t in migrated
    }
    assert len({s.products for s in statuses}) == 2, "two sizes of tenant, told apart"


def test_a_tenant_contracted_after_the_catalog_read_is_read_again(
    engine: Engine, make_tenant: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = ready_tenant(engine, make_tenant, copies=1)
    before = one(engine, tenant)
    real = status_module.schema_catalog
    calls = []

    def stale_then_real(connection, tenant_ids):  # type: ignore[no-untyped-def]
        calls.append(list(tenant_ids))
        schemas = real(connection, tenant_ids)
        if len(calls) == 1:  # what the catalog said just before the contract committed
            return [replace(s, has_images_column=True) for s in schemas]
        return schemas

    migrate.contract(engine, tenant_ids=[tenant])
    monkeypatch.setattr(status_module, "schema_catalog", stale_then_real)
    after = one(engine, tenant)
    assert len(calls) == 2, "the page failed on the dropped column and was read again"
    assert after.is_contracted
    assert after.jsonb_images == before.jsonb_images


def test_each_page_is_its_own_transaction(
    engine: Engine, make_tenant: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(status_module, "PAGE", 2)
    tenants = [make_tenant() for _ in range(6)]
    real = status_module._page_rows
    held_before_each_page: list[int] = []

    def counting(connection, schemas):  # type: ignore[no-untyped-def]
        held_before_each_page.append(
            int(
                connection.execute(
                    text(
                        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE l.pid = pg_backend_pid() AND n.nspname LIKE 'user\\_%'"
                    )
                ).scalar_one()
            )
        )
        return real(connection, schemas)

    monkeypatch.setattr(status_module, "_page_rows", counting)
    assert len(tenant_status(engine, tenants)) == 6
    assert held_before_each_page == [0, 0, 0], "no tenant table still locked by a past page"


def test_a_table_dropped_after_the_catalog_read_is_read_again(
    engine: Engine, tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.begin() as connection:  # as a downgrade of revision 0007 leaves it
        connection.execute(text(f'DROP TABLE "{tenant_schema(tenant)}".shadow_mismatches'))
    real = status_module.schema_catalog
    calls = []

    def stale_then_real(connection, tenant_ids):  # type: ignore[no-untyped-def]
        calls.append(list(tenant_ids))
        schemas = real(connection, tenant_ids)
        return [replace(s, has_mismatches=True) for s in schemas] if len(calls) == 1 else schemas

    monkeypatch.setattr(status_module, "schema_catalog", stale_then_real)
    assert one(engine, tenant).mismatches_last_hour == 0
    assert len(calls) == 2, "the page failed on the dropped table and was read again"
