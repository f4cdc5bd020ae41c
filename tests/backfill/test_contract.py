"""The contract step and the way back: guards refuse an unverified, drifted or not yet
canonical tenant and one held by a long transaction; contract then uncontract gives every
product its JSONB back; tenants move one at a time with API traffic on both; the app keeps
answering while a contract runs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Connection, Engine, text

from app.core import migrate
from app.core.database import tenant_schema, unit_of_work
from app.core.settings import Settings
from app.images import Image, image_to_element
from app.main import create_app
from app.repositories import product_images
from backfill import contract as steps
from backfill.runner import RunOptions, run_tenant
from backfill.tenants import is_contracted
from backfill.verify import verify_tenant
from migrations.tenancy import TenantMigrationFailed
from tests.backfill.test_runner import BASE, seed
from tests.conftest import bearer
from tests.flags.test_client import write_toggles
from tests.images.strategies import image_lists
from tests.images_db import (
    assert_representations_equal,
    insert_legacy_product,
    table_elements,
)

settings_for_db = hypothesis_settings(
    max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def jsonb_by_product(engine: Engine, tenant: int) -> dict[int, object]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(f'SELECT id, images FROM "{tenant_schema(tenant)}".products ORDER BY id')
        ).all()
    return {int(r.id): r.images for r in rows}


def ready_tenant(engine: Engine, make_tenant: Callable[[], int], copies: int = 2) -> int:
    """Dirty history, backfilled, verified and canonical: ready to contract."""
    tenant = make_tenant()
    seed(engine, tenant, copies=copies)
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    steps.canonicalize_tenant(engine, tenant)
    return tenant


def refusal(engine: Engine, tenant: int) -> str:
    with pytest.raises(TenantMigrationFailed) as failed:
        migrate.contract(engine, tenant_ids=[tenant])
    assert not is_contracted(engine, tenant), "a refused tenant is left untouched"
    return str(failed.value)


def test_guards_refuse_unverified_drifted_and_not_canonical_tenants(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    unverified = make_tenant()
    seed(engine, unverified)
    run_tenant(engine, unverified, RunOptions())
    assert "not verified" in refusal(engine, unverified)

    not_canonical = make_tenant()
    seed(engine, not_canonical)
    run_tenant(engine, not_canonical, RunOptions())
    assert verify_tenant(engine, not_canonical).is_verified
    assert "canonicalize" in refusal(engine, not_canonical)

    drifted = ready_tenant(engine, make_tenant)
    with engine.begin() as connection:  # a write that bypassed the dual-write
        connection.execute(
            text(
                f"UPDATE \"{tenant_schema(drifted)}\".product_images SET alt_text = 'by hand' "
                "WHERE id = (SELECT min(id::text)::uuid FROM "
                f'"{tenant_schema(drifted)}".product_images)'
            )
        )
    assert "drift" in refusal(engine, drifted)


def test_a_long_transaction_on_the_tenant_is_reported_not_queued_behind(
    engine: Engine, make_tenant: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = ready_tenant(engine, make_tenant, copies=1)
    monkeypatch.setattr(steps, "LONG_TRANSACTION_S", 0)
    with engine.connect() as blocker:
        blocker.execute(text(f'SELECT id FROM "{tenant_schema(tenant)}".products FOR UPDATE'))
        message = refusal(engine, tenant)
        pid = blocker.execute(text("SELECT pg_backend_pid()")).scalar_one()
        blocker.rollback()
    assert "long-running transactions" in message and f"pid {pid}" in message


def test_contract_then_uncontract_gives_every_product_its_jsonb_back(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = ready_tenant(engine, make_tenant)
    before = jsonb_by_product(engine, tenant)
    backups_before = len(steps.list_backups(engine, tenant))

    migrate.contract(engine, tenant_ids=[tenant])
    assert is_contracted(engine, tenant)
    assert len(steps.list_backups(engine, tenant)) == backups_before + 1, "backup first"
    migrate.uncontract(engine, tenant_ids=[tenant])

    assert not is_contracted(engine, tenant)
    assert jsonb_by_product(engine, tenant) == before
    assert verify_tenant(engine, tenant).is_verified
    migrate.contract(engine, tenant_ids=[tenant])  # and again
    assert is_contracted(engine, tenant)


def test_canonicalize_keeps_the_original_bytes_in_a_backup_that_restores_them(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    seed(engine, tenant)
    original = jsonb_by_product(engine, tenant)
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    result = steps.canonicalize_tenant(engine, tenant)
    assert result.backup is not None and result.rewritten > 0
    assert jsonb_by_product(engine, tenant) != original
    assert verify_tenant(engine, tenant).is_verified, "the rewrite changes no image"
    steps.restore_backup(engine, tenant, result.backup.id)
    assert jsonb_by_product(engine, tenant) == original


@pytest.fixture
def api(settings: Settings, engine: Engine, tmp_path: Path) -> Callable[[list[int]], TestClient]:
    def build(read_table: list[int]) -> TestClient:
        toggles = tmp_path / "toggles.json"
        write_toggles(toggles, [str(t) for t in read_table])
        return TestClient(create_app(settings.model_copy(update={"flags_file": toggles}), engine))

    return build


def test_one_tenant_contracted_while_another_stays_on_jsonb_with_traffic_on_both(
    engine: Engine, make_tenant: Callable[[], int], api: Callable[[list[int]], TestClient]
) -> None:
    contracted = ready_tenant(engine, make_tenant, copies=1)
    legacy = make_tenant()
    legacy_product = insert_legacy_product(engine, legacy, [{"url": f"{BASE}/a.jpg"}])
    product = insert_legacy_product(engine, contracted, [{"url": f"{BASE}/x.jpg"}])
    run_tenant(engine, contracted, RunOptions())
    assert verify_tenant(engine, contracted).is_verified
    steps.canonicalize_tenant(engine, contracted)
    migrate.contract(engine, tenant_ids=[contracted])

    with api([]) as client:  # no read-table flag at all: the contracted tenant reads the table
        for tenant, pid in ((contracted, product), (legacy, legacy_product)):
            added = client.post(
                f"/api/products/{pid}/images", json={"url": f"{BASE}/n.jpg"}, headers=bearer(tenant)
            )
            assert added.status_code == 201, added.text
            listed = client.get(f"/api/products/{pid}/images", headers=bearer(tenant))
            assert [i["url"] for i in listed.json()["images"]][-1] == f"{BASE}/n.jpg"
            expected = "table" if tenant == contracted else "jsonb"
            assert listed.headers["x-images-read-path"] == expected
        created = client.post(
            "/api/products", json={"title": "New", "price": "10"}, headers=bearer(contracted)
        )
        assert created.status_code == 201, created.text
        vinted = client.get(
            f"/api/products/{product}/marketplaces/vinted", headers=bearer(contracted)
        )
        assert vinted.status_code in (200, 409)
    assert_representations_equal(engine, legacy, legacy_product)
    migrate.uncontract(engine, tenant_ids=[contracted])
    assert_representations_equal(engine, contracted, product)


def test_the_app_keeps_answering_while_a_contract_runs(
    engine: Engine, make_tenant: Callable[[], int], api: Callable[[list[int]], TestClient]
) -> None:
    tenant = ready_tenant(engine, make_tenant, copies=3)
    product = insert_legacy_product(engine, tenant, [{"url": f"{BASE}/x.jpg"}])
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    steps.canonicalize_tenant(engine, tenant)
    statuses: list[int] = []
    done = threading.Event()

    with api([tenant]) as client:

        def hammer() -> None:
            step = 0
            while not done.is_set():
                step += 1
                if step % 2:
                    response = client.get(f"/api/products/{product}/images", headers=bearer(tenant))
                else:
                    response = client.patch(
                        f"/api/products/{product}/images/"
                        + client.get(
                            f"/api/products/{product}/images", headers=bearer(tenant)
                        ).json()["images"][0]["id"],
                        json={"alt_text": f"step {step}"},
                        headers=bearer(tenant),
                    )
                statuses.append(response.status_code)

        thread = threading.Thread(target=hammer)
        thread.start()
        try:
            migrate.contract(engine, tenant_ids=[tenant])
            for _ in range(20):  # a little traffic after the drop too
                client.get(f"/api/products/{product}/images", headers=bearer(tenant))
        finally:
            done.set()
            thread.join()
    assert is_contracted(engine, tenant)
    assert statuses and set(statuses) == {200}, sorted(set(statuses))


def test_a_tenant_created_after_the_transition_starts_contracted(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    from datetime import timedelta

    from app.core.security import issue_token, now_utc

    app = create_app(settings.model_copy(update={"contract_new_tenants": True}), engine)
    admin = issue_token(
        settings.jwt_secret, user_id=None, is_admin=True, ttl=timedelta(hours=1), now=now_utc()
    )
    with TestClient(app) as client:
        created = client.post(
            "/api/admin/tenants",
            json={"email": "late@example.com"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert created.status_code == 201, created.text
        tenant = created.json()["id"]
        assert is_contracted(engine, tenant)
        product = client.post(
            "/api/products", json={"title": "First", "price": "5"}, headers=bearer(tenant)
        ).json()["id"]
        added = client.post(
            f"/api/products/{product}/images", json={"url": f"{BASE}/a.jpg"}, headers=bearer(tenant)
        )
        assert added.status_code == 201, added.text
        listed = client.get(f"/api/products/{product}/images", headers=bearer(tenant))
        assert listed.headers["x-images-read-path"] == "table"


@settings_for_db
@given(
    image_lists().filter(  # PostgreSQL text cannot hold NUL (the API refuses it too)
        lambda images: all("\x00" not in f"{i.url}{i.alt_text}" for i in images)
    )
)
def test_the_sql_rebuild_is_exactly_what_the_dual_write_writes(
    engine: Engine, shared_tenant: int, images: tuple[Image, ...]
) -> None:
    schema = f'"{tenant_schema(shared_tenant)}"'
    product = insert_legacy_product(engine, shared_tenant, [])
    with unit_of_work(engine, shared_tenant) as session:
        product_images.replace(session, product, images)
    with engine.begin() as connection:
        connection.execute(
            text(f"UPDATE {schema}.products SET images = CAST(:j AS jsonb) WHERE id = :id"),
            {"j": json.dumps([image_to_element(i) for i in images]), "id": product},
        )
        same = connection.execute(
            text(
                f"SELECT p.images = {steps.rebuilt(schema)} FROM {schema}.products AS p "
                "WHERE p.id = :id"
            ),
            {"id": product},
        ).scalar_one()
    assert same


@pytest.fixture(scope="module")
def shared_tenant(engine: Engine) -> int:
    from app.services.tenant_service import create_tenant

    return create_tenant(engine, email=f"rebuild-{uuid4().hex[:8]}@example.com").id


def wait_for_a_blocked_update(engine: Engine, table: str, bound: float = 60.0) -> None:
    """Until another session's UPDATE of `table` waits on a lock (a bound on a hang, not a
    timing assertion)."""
    deadline = time.monotonic() + bound
    with engine.connect() as watcher:
        while time.monotonic() < deadline:
            blocked = watcher.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND query LIKE :q"
                ),
                {"q": f"UPDATE %{table}%"},
            ).scalar_one()
            watcher.rollback()
            if blocked:
                return
            time.sleep(0.02)
    raise AssertionError(f"no UPDATE of {table} ever waited on a lock")


def clear_verified(engine: Engine, tenant: int) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(f'UPDATE "{tenant_schema(tenant)}".image_migration_state SET verified_at = NULL')
        )


def test_canonicalize_stops_when_the_tenant_loses_its_verified_state_mid_run(
    engine: Engine, make_tenant: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = make_tenant()
    seed(engine, tenant)
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    before = jsonb_by_product(engine, tenant)
    real, check = steps.rewrite_batch, steps._still_verified
    batches: list[list[int]] = []
    drifting: list[threading.Thread] = []

    def first_then_drift(connection: Connection, schema: str, ids: list[int]) -> int:
        batches.append(ids)
        rewritten = real(connection, schema, ids)
        if len(batches) == 1:
            # e.g. a write with the kill switch on, elsewhere in the tenant: waits for this
            # batch's FOR SHARE on the state row, then clears it.
            drifting.append(threading.Thread(target=clear_verified, args=(engine, tenant)))
            drifting[0].start()
            wait_for_a_blocked_update(engine, "image_migration_state")
        return rewritten

    def after_the_drift(connection: Connection, schema: str, tenant_id: int) -> None:
        # The drifting write, queued behind batch 1, commits before batch 2 looks. (Without
        # this join batch 2's FOR SHARE could be granted first, twice in CI under load:
        # harmless, since a drifting write touches the state row before any product, so
        # batch 2 still rebuilt from intact rows; but then this test saw two batches.)
        for thread in drifting:
            thread.join()
        check(connection, schema, tenant_id)

    monkeypatch.setattr(steps, "rewrite_batch", first_then_drift)
    monkeypatch.setattr(steps, "_still_verified", after_the_drift)
    with pytest.raises(steps.ContractRefused, match="lost its verified state"):
        steps.canonicalize_tenant(engine, tenant, batch=2)
    after = jsonb_by_product(engine, tenant)
    untouched = [p for p in before if p not in batches[0]]
    assert len(batches) == 1 and all(after[p] == before[p] for p in untouched)


def test_the_contract_rechecks_the_verified_state_under_its_lock(
    engine: Engine, make_tenant: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = ready_tenant(engine, make_tenant, copies=1)
    real = steps.take_backup

    def backup_then_drift(connection: Connection, schema: str, reason: str) -> steps.Backup:
        taken = real(connection, schema, reason)
        clear_verified(engine, tenant)  # a drifting write commits before the lock
        return taken

    monkeypatch.setattr(steps, "take_backup", backup_then_drift)
    assert "lost its verified state" in refusal(engine, tenant)


def test_a_restore_drops_the_restored_products_rows_so_the_jsonb_stays_the_truth(
    engine: Engine, make_tenant: Callable[[], int], api: Callable[[list[int]], TestClient]
) -> None:
    tenant = make_tenant()
    product = insert_legacy_product(
        engine, tenant, [{"url": f"{BASE}/a.jpg"}, {"url": f"{BASE}/b.jpg"}]
    )
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    backup = steps.backup_tenant(engine, tenant)
    with api([]) as client:  # a write after the backup: c.jpg
        added = client.post(
            f"/api/products/{product}/images", json={"url": f"{BASE}/c.jpg"}, headers=bearer(tenant)
        )
        assert added.status_code == 201
        assert steps.restore_backup(engine, tenant, backup.id) == 1
        assert table_elements(engine, tenant, product) == [], "rows dropped with the restore"
        # The next write builds on the restored JSONB (a, b), not on rows holding c.
        client.post(
            f"/api/products/{product}/images", json={"url": f"{BASE}/d.jpg"}, headers=bearer(tenant)
        )
        urls = [
            i["url"]
            for i in client.get(f"/api/products/{product}/images", headers=bearer(tenant)).json()[
                "images"
            ]
        ]
    assert urls == [f"{BASE}/a.jpg", f"{BASE}/b.jpg", f"{BASE}/d.jpg"]
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
