"""Drift whatever its timing (issue 18, cases 2, 7, 8, 9): verify never marks a tenant
verified over a drift recorded after its snapshot; the safety net logs every write of
`products.images` that bypasses the dual-write; the fingerprint sees every image key;
`backfill repair` rebuilds drifted products from their JSONB."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text

from app.core import migrate
from app.core.database import tenant_schema
from app.images import IMAGE_KEYS
from app.repositories import migration_state
from backfill import contract as steps
from backfill.repair import UnknownProducts, repair_tenant
from backfill.runner import RunOptions, run_tenant
from backfill.verify import (
    VerificationReport,
    verified_at,
    verify_tenant,
)
from tests.backfill.test_cli import backfill
from tests.conftest import bearer
from tests.images_db import insert_legacy_product, jsonb_elements, table_elements

BASE = "http://testserver/media"
LEGACY = [{"url": f"{BASE}/{n}.jpg", "order": i} for i, n in enumerate("abc")]
SOURCES = ["pythonApiWOO"]


def verified_tenant(engine: Engine, make_tenant: Callable[[], int]) -> tuple[int, int]:
    tenant = make_tenant()
    product = insert_legacy_product(engine, tenant, LEGACY)
    insert_legacy_product(engine, tenant, LEGACY[:1], source="shopify")
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    return tenant, product


def bypass_write(connection: Connection, tenant: int, product: int) -> None:
    """What an old app version or a hand-written UPDATE does: the JSONB only, updated_at
    left alone."""
    connection.execute(
        text(
            f"UPDATE {tenant_schema(tenant)}.products SET images = images || "
            "CAST(:extra AS jsonb) WHERE id = :id"
        ),
        {"extra": json.dumps([{"url": f"{BASE}/bypass.jpg", "order": 9}]), "id": product},
    )


def changed(engine: Engine, tenant: int) -> list[int]:
    with engine.connect() as connection:
        return [
            entry.product_id
            for entry in migration_state.changed_products(connection, f'"{tenant_schema(tenant)}"')
        ]


@contextmanager
def state_row_held(engine: Engine, tenant: int) -> Iterator[Connection]:
    """A transaction holding the tenant's state row, as a drifting write does from its first
    statement on it until it commits."""
    with engine.connect() as connection:
        connection.execute(
            text(
                f"SELECT 1 FROM {tenant_schema(tenant)}.image_migration_state "
                "WHERE id = 1 FOR UPDATE"
            )
        )
        yield connection


def wait_for_blocked_update(engine: Engine, table: str) -> None:
    """Until another session waits on a lock in an UPDATE of `table` (no timed assertion:
    the test fails only if it never happens within a generous bound)."""
    with engine.connect() as connection:
        for _ in range(600):
            blocked = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query ILIKE :pattern"
                ),
                {"pattern": f"UPDATE %{table}%"},
            ).scalar_one()
            if blocked:
                return
            connection.execute(text("SELECT pg_sleep(0.05)"))
            connection.commit()
    raise AssertionError(f"no UPDATE of {table} ever waited")


# --- case 2: verify's compare-and-set ---------------------------------------------------------


def test_verify_does_not_mark_verified_over_a_drift_committed_while_it_runs(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    product = insert_legacy_product(engine, tenant, LEGACY)
    run_tenant(engine, tenant, RunOptions())
    reports: list[VerificationReport] = []
    with state_row_held(engine, tenant) as drifting:
        # The verify takes its snapshot and compares (clean), then waits to mark the tenant
        # verified; meanwhile a write outside the dual-write drops the product's rows and
        # changes its JSONB, and commits.
        verifier = threading.Thread(target=lambda: reports.append(verify_tenant(engine, tenant)))
        verifier.start()
        wait_for_blocked_update(engine, "image_migration_state")
        drifting.execute(
            text(f"DELETE FROM {tenant_schema(tenant)}.product_images WHERE product_id = :id"),
            {"id": product},
        )
        bypass_write(drifting, tenant, product)
        drifting.commit()
        verifier.join(timeout=120)
    (report,) = reports
    assert report.mismatched_products == 0, "the snapshot itself was clean"
    assert report.raced_by_drift and not report.is_verified, "but the drift after it wins"
    assert verified_at(engine, tenant) is None
    assert changed(engine, tenant) == [product]
    report = verify_tenant(engine, tenant)
    assert not report.is_verified
    assert report.mismatched_products == 1


def test_a_drift_before_the_mark_leaves_a_clean_verify_unmarked_and_says_why(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    insert_legacy_product(engine, tenant, LEGACY)
    run_tenant(engine, tenant, RunOptions())
    schema = f'"{tenant_schema(tenant)}"'
    with engine.connect() as connection:
        seen = migration_state.drift_generation(connection, schema)
    with engine.begin() as connection:
        migration_state.record_drift(connection, schema, "kill-switch write")
    with engine.begin() as connection:
        assert not migration_state.mark_verified(
            connection, schema, seen_generation=seen, summary="{}"
        )
    assert verified_at(engine, tenant) is None


# --- case 9: the safety net --------------------------------------------------------------------


def test_a_write_outside_the_dual_write_is_logged_and_clears_verified(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, product = verified_tenant(engine, make_tenant)
    assert changed(engine, tenant) == [], "a clean verify consumed the history's entries"
    with engine.begin() as connection:
        bypass_write(connection, tenant, product)
    assert verified_at(engine, tenant) is None
    assert changed(engine, tenant) == [product]
    with engine.connect() as connection:
        drift = connection.execute(
            text(
                f"SELECT verification ->> 'drift' FROM {tenant_schema(tenant)}"
                ".image_migration_state"
            )
        ).scalar_one()
    assert f"product {product}" in drift


def test_writes_that_keep_both_representations_equal_are_not_logged(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, product = verified_tenant(engine, make_tenant)
    with engine.begin() as connection:
        migration_state.declare_writer(connection, "dual-write")
        connection.execute(
            text(f"UPDATE {tenant_schema(tenant)}.products SET images = images WHERE id = :id"),
            {"id": product},
        )
        connection.execute(
            text(f"UPDATE {tenant_schema(tenant)}.products SET title = 'x' WHERE id = :id"),
            {"id": product},
        )
    with engine.begin() as connection:  # a new transaction: the declaration is gone
        connection.execute(
            text(f"UPDATE {tenant_schema(tenant)}.products SET title = 'y' WHERE id = :id"),
            {"id": product},
        )
    assert changed(engine, tenant) == []
    assert verified_at(engine, tenant) is not None


def test_a_product_inserted_with_images_outside_the_dual_write_is_logged(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, _ = verified_tenant(engine, make_tenant)
    late = insert_legacy_product(engine, tenant, LEGACY)  # the legacy importer, after verify
    assert changed(engine, tenant) == [late]
    assert verified_at(engine, tenant) is None


def test_verify_since_sees_a_bypassing_write_that_left_updated_at_alone(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, product = verified_tenant(engine, make_tenant)
    with engine.connect() as connection:
        since = connection.execute(text("SELECT now()")).scalar_one().isoformat()
    with engine.begin() as connection:
        bypass_write(connection, tenant, product)
    report = verify_tenant(engine, tenant, since=since)
    assert report.products == 1
    assert not report.is_verified
    assert [m.product_id for m in report.mismatches] == [product]


def test_contract_drops_the_safety_net_with_the_column_and_uncontract_restores_it(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, product = verified_tenant(engine, make_tenant)
    steps.canonicalize_tenant(engine, tenant)
    assert changed(engine, tenant) == [], "canonicalize declares itself"
    migrate.contract(engine, tenant_ids=[tenant])
    migrate.uncontract(engine, tenant_ids=[tenant])
    assert changed(engine, tenant) == [], "the rebuild is no drift"
    with engine.begin() as connection:
        bypass_write(connection, tenant, product)
    assert changed(engine, tenant) == [product]


# --- case 7: the fingerprint -------------------------------------------------------------------


MUTATIONS = {
    "id": "id = md5(id::text)::uuid",
    "url": "url = url || 'x'",
    "order": '"order" = "order" + 10',
    "is_label": "is_label = NOT is_label",
    "alt_text": "alt_text = 'x'",
    "tags": "tags = '{x}'",
    "mime_type": "mime_type = 'image/x'",
    "file_size": "file_size = 1",
    "width": "width = 1",
    "height": "height = 1",
    "created_at": "created_at = created_at + interval '1 microsecond'",
    "updated_at": "updated_at = updated_at + interval '1 microsecond'",
}


@pytest.mark.parametrize("key", sorted(MUTATIONS))
def test_verify_sees_a_change_in_any_single_key(
    engine: Engine, make_tenant: Callable[[], int], key: str
) -> None:
    assert set(MUTATIONS) == set(IMAGE_KEYS)
    tenant, product = verified_tenant(engine, make_tenant)
    with engine.begin() as connection:
        connection.execute(
            text(
                f"UPDATE {tenant_schema(tenant)}.product_images SET {MUTATIONS[key]} "
                'WHERE product_id = :id AND "order" = 2'
            ),
            {"id": product},
        )
    assert not verify_tenant(engine, tenant).is_verified


def test_the_fingerprint_tells_which_field_is_null(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    product = insert_legacy_product(
        engine, tenant, [{"url": f"{BASE}/a.jpg", "file_size": 500}], source="shopify"
    )
    run_tenant(engine, tenant, RunOptions())
    with engine.begin() as connection:
        connection.execute(
            text(
                f"UPDATE {tenant_schema(tenant)}.product_images "
                "SET file_size = NULL, width = 500 WHERE product_id = :id"
            ),
            {"id": product},
        )
    report = verify_tenant(engine, tenant)
    assert not report.is_verified
    assert report.mismatched_products == 1


# --- case 8: repair ----------------------------------------------------------------------------


def test_repair_rebuilds_the_drifted_products_and_verify_then_passes(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, product = verified_tenant(engine, make_tenant)
    with engine.begin() as connection:
        bypass_write(connection, tenant, product)
    assert not verify_tenant(engine, tenant).is_verified
    run_tenant(engine, tenant, RunOptions())
    assert not verify_tenant(engine, tenant).is_verified, "run skips products with rows"
    result = repair_tenant(engine, tenant, legacy_sources=SOURCES)
    assert result.products == [product]
    assert [e["url"] for e in table_elements(engine, tenant, product)][-1] == f"{BASE}/bypass.jpg"
    assert changed(engine, tenant) == []
    assert verify_tenant(engine, tenant).is_verified


def test_the_last_drift_keeps_its_reason_after_a_clean_verify(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    # The console shows "Last drift <when>: <why>"; a clean verify used to replace the
    # verification summary whole and the reason with it ("Last drift ...: recorded").
    tenant, product = verified_tenant(engine, make_tenant)
    with engine.begin() as connection:
        bypass_write(connection, tenant, product)
    repair_tenant(engine, tenant, legacy_sources=SOURCES)
    assert verify_tenant(engine, tenant).is_verified
    with engine.connect() as connection:
        last = migration_state.drift(connection, f"{tenant_schema(tenant)}")
    assert last.found_at is not None
    assert last.reason is not None and f"product {product}" in last.reason


def test_repair_brings_back_rows_a_table_write_lost(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, product = verified_tenant(engine, make_tenant)
    with engine.begin() as connection:
        connection.execute(
            text(
                f"DELETE FROM {tenant_schema(tenant)}.product_images "
                'WHERE product_id = :id AND "order" = 1'
            ),
            {"id": product},
        )
    assert repair_tenant(engine, tenant, legacy_sources=SOURCES).products == [product]
    assert len(table_elements(engine, tenant, product)) == 3
    assert verify_tenant(engine, tenant).is_verified


def test_repair_of_named_products_refuses_unknown_ones(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, product = verified_tenant(engine, make_tenant)
    with pytest.raises(UnknownProducts, match="no product 999999"):
        repair_tenant(engine, tenant, legacy_sources=SOURCES, product_ids=[product, 999999])
    assert repair_tenant(
        engine, tenant, legacy_sources=SOURCES, product_ids=[product]
    ).products == [product]


def test_the_repair_command_rebuilds_and_says_what(
    engine: Engine, make_tenant: Callable[[], int], database_url: str, tmp_path: Path
) -> None:
    tenant, product = verified_tenant(engine, make_tenant)
    with engine.begin() as connection:
        bypass_write(connection, tenant, product)
    done = backfill(database_url, "repair", "--tenant", str(tenant), tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "1 product(s) rebuilt" in done.stderr
    assert backfill(database_url, "verify", "--tenant", str(tenant), tmp=tmp_path).returncode == 0
    unknown = backfill(
        database_url, "repair", "--tenant", str(tenant), "--product", "999999", tmp=tmp_path
    )
    assert unknown.returncode == 2
    assert "--product" in unknown.stderr


def test_repair_reports_a_product_the_table_cannot_take_and_rebuilds_the_others(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, product = verified_tenant(engine, make_tenant)
    schema = f'"{tenant_schema(tenant)}"'
    with engine.begin() as connection:
        steps.rewrite_batch(connection, schema, [product])  # its JSONB now carries its ids
    other = insert_legacy_product(engine, tenant, [])
    with engine.begin() as connection:
        # An old app version's "duplicate listing": the first product's JSONB, with the ids
        # the table holds, copied into another product; and a plain drift elsewhere.
        connection.execute(
            text(
                f"UPDATE {schema}.products SET images = "
                f"(SELECT images FROM {schema}.products WHERE id = :source) WHERE id = :target"
            ),
            {"source": product, "target": other},
        )
    third = insert_legacy_product(engine, tenant, LEGACY)
    result = repair_tenant(engine, tenant, legacy_sources=SOURCES, batch=10)
    assert result.products == [third]
    assert list(result.failed) == [other]
    assert "duplicate key" in result.failed[other]


def test_a_dual_write_after_a_write_outside_it_builds_on_the_jsonb_not_on_stale_rows(
    engine: Engine, make_tenant: Callable[[], int], client: TestClient
) -> None:
    """During a rolling deploy an old app version adds an image to the JSONB only; the next
    write through the new app must keep it (the rows are stale), not rewrite the JSONB from
    the rows and lose it."""
    tenant, product = verified_tenant(engine, make_tenant)
    with engine.begin() as connection:
        bypass_write(connection, tenant, product)
    listed = client.get(f"/api/products/{product}/images", headers=bearer(tenant)).json()
    assert [i["url"] for i in listed["images"]][-1] == f"{BASE}/bypass.jpg"
    first = listed["images"][0]["id"]
    patched = client.patch(
        f"/api/products/{product}/images/{first}",
        json={"alt_text": "front"},
        headers=bearer(tenant),
    )
    assert patched.status_code == 200, patched.text
    urls = [e["url"] for e in jsonb_elements(engine, tenant, product)]
    assert urls[-1] == f"{BASE}/bypass.jpg", "the old app's image survived the write"
    assert [e["url"] for e in table_elements(engine, tenant, product)] == urls
    assert changed(engine, tenant) == [], "the write made both representations equal again"
    assert verify_tenant(engine, tenant).is_verified


def test_truncating_the_table_the_runbook_way_back_clears_verified(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    """RUNBOOK section 3's way back: a verified tenant whose rows are truncated must not
    read an empty table."""
    tenant, _ = verified_tenant(engine, make_tenant)
    schema = tenant_schema(tenant)
    with engine.begin() as connection:
        connection.execute(
            text(f"TRUNCATE {schema}.product_images, {schema}.rejected_image_elements")
        )
    assert verified_at(engine, tenant) is None
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
