"""The backfill runner on real PostgreSQL: complete, idempotent, resumable, gentle."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, text

from app.core.database import tenant_schema, unit_of_work
from app.services.product_image_service import ProductImageService
from backfill.health import HealthLimits
from backfill.runner import RunOptions, TenantBusy, run_tenant
from backfill.verify import verify_tenant
from tests.images_db import (
    expected_elements,
    insert_legacy_product,
    jsonb_elements,
    table_elements,
)

# Health signals off (standby lag, long autovacuum, forced checkpoints): for tests that count
# every wait, on a server other tests share.
NO_SERVER_SIGNALS = HealthLimits(
    max_replication_lag_seconds=None,
    autovacuum_after_seconds=None,
    yield_to_forced_checkpoints=False,
)
BASE = "http://testserver/media"
CREATED = datetime(2024, 5, 1, 10, tzinfo=UTC)
DIRTY: list[Any] = [
    [{"url": f"{BASE}/a.jpg", "order": 2}, {"url": f"{BASE}/b.jpg", "order": "0"}],
    [{"url": f"{BASE}/c.jpg", "order": 0}, {"url": f"{BASE}/c.jpg", "order": 0}, "bare-string"],
    [{"order": 1}, {"url": f"{BASE}/d.jpg", "created_at": "not a date"}],
    [],
    None,
    {"url": f"{BASE}/e.jpg"},
    [{"url": f"{BASE}/f.jpg", "order": 5}, {"url": f"{BASE}/label.jpg", "order": 9}],
]


class Scripted:
    """Controls that stop, pause or run a hook on cue."""

    def __init__(
        self,
        *,
        stop_after_checks: int | None = None,
        paused_checks: int = 0,
        on_sleep: Callable[[], None] | None = None,
    ) -> None:
        self.checks = 0
        self.stop_after_checks = stop_after_checks
        self.paused_checks = paused_checks
        self.on_sleep = on_sleep
        self.sleeps: list[float] = []

    def should_stop(self) -> bool:
        self.checks += 1
        return self.stop_after_checks is not None and self.checks > self.stop_after_checks

    def is_paused(self) -> bool:
        if self.paused_checks > 0:
            self.paused_checks -= 1
            return True
        return False

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep()


def seed(engine: Engine, tenant: int, copies: int = 1) -> list[int]:
    products = []
    for _ in range(copies):
        for index, images in enumerate(DIRTY):
            source = "pythonApiWOO" if index % 2 == 0 else "stoflow"
            products.append(insert_legacy_product(engine, tenant, images, source=source))
    return products


def count(engine: Engine, tenant: int, table: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(f'SELECT count(*) FROM "{tenant_schema(tenant)}".{table}')
            ).scalar_one()
        )


def test_run_migrates_every_product_exactly_as_the_python_path_and_is_idempotent(
    engine: Engine, tenant: int
) -> None:
    products = seed(engine, tenant)

    first = run_tenant(engine, tenant, RunOptions(batch_size=3))
    rows_after_first = {p: table_elements(engine, tenant, p) for p in products}
    second = run_tenant(engine, tenant, RunOptions(batch_size=3))

    assert first.status == "done"
    for product_id in products:
        assert rows_after_first[product_id] == expected_elements(engine, tenant, product_id)
    assert first.images_inserted == sum(len(rows) for rows in rows_after_first.values())
    assert second.images_inserted == 0
    assert {p: table_elements(engine, tenant, p) for p in products} == rows_after_first


def test_rejected_elements_land_in_the_report_exactly(engine: Engine, tenant: int) -> None:
    seed(engine, tenant)
    run_tenant(engine, tenant, RunOptions())
    # DIRTY holds: a bare string, an element without url, a JSON null column, an object column.
    assert count(engine, tenant, "rejected_image_elements") == 4
    with engine.connect() as connection:
        reasons = sorted(
            connection.execute(
                text(f'SELECT reason FROM "{tenant_schema(tenant)}".rejected_image_elements')
            ).scalars()
        )
    assert reasons == ["column_not_an_array", "column_null", "missing_url", "not_an_object"]


def test_the_label_rule_applies_to_legacy_sources_only(engine: Engine, tenant: int) -> None:
    legacy = insert_legacy_product(engine, tenant, DIRTY[6], source="pythonApiWOO")
    modern = insert_legacy_product(engine, tenant, DIRTY[6], source="stoflow")
    run_tenant(engine, tenant, RunOptions())
    assert [row["is_label"] for row in table_elements(engine, tenant, legacy)] == [False, True]
    assert [row["is_label"] for row in table_elements(engine, tenant, modern)] == [False, False]


def test_a_stopped_run_resumes_from_its_checkpoint_with_no_duplicate_and_no_gap(
    engine: Engine, tenant: int
) -> None:
    products = seed(engine, tenant, copies=3)

    stopped = run_tenant(
        engine, tenant, RunOptions(batch_size=2), controls=Scripted(stop_after_checks=3)
    )
    assert stopped.status == "interrupted"
    assert stopped.products_scanned == 6
    resumed = run_tenant(engine, tenant, RunOptions(batch_size=2))

    assert resumed.run_id == stopped.run_id, "the unfinished run is resumed, not restarted"
    assert resumed.status == "done"
    assert resumed.products_scanned == len(products) - 6
    for product_id in products:
        assert table_elements(engine, tenant, product_id) == expected_elements(
            engine, tenant, product_id
        )


def test_products_already_migrated_by_a_live_write_are_left_alone(
    engine: Engine, tenant: int
) -> None:
    product = insert_legacy_product(engine, tenant, DIRTY[6], source="pythonApiWOO")
    service = ProductImageService(legacy_sources=["pythonApiWOO"], max_images=30, url_bases=[BASE])
    with unit_of_work(engine, tenant) as session:
        first = service.list_images(session, product_id=product).images[0]
        service.set_label_flag(
            session, product_id=product, image_id=first.id, is_label=True, now=datetime.now(UTC)
        )
    before = table_elements(engine, tenant, product)

    result = run_tenant(engine, tenant, RunOptions())

    assert result.images_inserted == 0
    assert table_elements(engine, tenant, product) == before
    assert before == jsonb_elements(engine, tenant, product)
    assert [row["is_label"] for row in before] == [True, False], "the operator's label stays"


def test_a_locked_product_is_deferred_then_migrated_when_the_lock_goes(
    engine: Engine, tenant: int
) -> None:
    products = seed(engine, tenant, copies=2)
    holder = engine.connect()
    holder.execute(
        text(f'SELECT id FROM "{tenant_schema(tenant)}".products WHERE id = :id FOR UPDATE'),
        {"id": products[3]},
    )

    def release() -> None:
        if holder.in_transaction():
            holder.rollback()

    controls = Scripted(on_sleep=release)
    try:
        result = run_tenant(
            engine,
            tenant,
            RunOptions(initial_batch_size=8, lock_timeout_ms=50),
            controls=controls,
        )
    finally:
        release()
        holder.close()

    assert result.lock_timeouts >= 1, "the batch hit the lock and shrank"
    assert result.status == "done"
    assert result.deferred == 0
    assert count(engine, tenant, "backfill_deferred") == 0
    for product_id in products:
        assert table_elements(engine, tenant, product_id) == expected_elements(
            engine, tenant, product_id
        )


def test_pause_waits_between_batches_then_goes_on(engine: Engine, tenant: int) -> None:
    seed(engine, tenant)
    controls = Scripted(paused_checks=3)
    result = run_tenant(engine, tenant, RunOptions(batch_size=2), controls=controls)
    assert result.status == "done"
    assert controls.sleeps[:3] == [1.0, 1.0, 1.0]


def test_a_dry_run_measures_and_keeps_nothing(engine: Engine, tenant: int) -> None:
    seed(engine, tenant)
    result = run_tenant(engine, tenant, RunOptions(dry_run=True, batch_size=3))
    assert result.images_inserted > 0
    assert count(engine, tenant, "product_images") == 0
    assert count(engine, tenant, "rejected_image_elements") == 0
    assert count(engine, tenant, "backfill_runs") == 0


class HoldsTheTenant(Scripted):
    """Pauses inside the run until released: the run holds the tenant's lock meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = threading.Event()
        self.leave = threading.Event()

    def is_paused(self) -> bool:
        self.inside.set()
        self.leave.wait(10)
        return False


def test_two_runners_never_take_the_same_tenant(engine: Engine, tenant: int) -> None:
    seed(engine, tenant)
    holder = HoldsTheTenant()
    first = threading.Thread(
        target=run_tenant, args=(engine, tenant, RunOptions()), kwargs={"controls": holder}
    )
    first.start()
    try:
        assert holder.inside.wait(10)
        with pytest.raises(TenantBusy):
            run_tenant(engine, tenant, RunOptions())
    finally:
        holder.leave.set()
        first.join()


def test_history_beyond_the_api_limits_migrates_whole(engine: Engine, tenant: int) -> None:
    """Legacy data is not refused for limits that only new input must respect."""
    long_alt = "x" * 600
    many_tags = [f"t{i}" for i in range(25)]
    product = insert_legacy_product(
        engine, tenant, [{"url": f"{BASE}/a.jpg", "alt_text": long_alt, "tags": many_tags}]
    )
    result = run_tenant(engine, tenant, RunOptions())
    assert result.status == "done"
    [row] = table_elements(engine, tenant, product)
    assert (row["alt_text"], row["tags"]) == (long_alt, many_tags)
    assert [row] == expected_elements(engine, tenant, product)


def test_the_backfill_yields_to_live_traffic_and_not_on_an_idle_database(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    idle_tenant, busy_tenant = make_tenant(), make_tenant()
    for tenant in (idle_tenant, busy_tenant):
        seed(engine, tenant, copies=3)
    # Only the app's sessions may make it wait here: a checkpoint forced by another test
    # (the server is shared) once added a health wait to the sleeps counted below.
    options = RunOptions(batch_size=4, health=NO_SERVER_SIGNALS)

    idle = Scripted()
    quiet = run_tenant(engine, idle_tenant, options, controls=idle)
    assert quiet.yields == 0 and idle.sleeps == []

    busy = Scripted()
    with engine.connect() as app_session:  # the app mid-request: a transaction in progress
        app_session.execute(text("SELECT 1"))
        loaded = run_tenant(engine, busy_tenant, options, controls=busy)
        app_session.rollback()
    assert loaded.yields > 0 and len(busy.sleeps) == loaded.yields
    assert verify_tenant(engine, busy_tenant).is_verified

    with engine.connect() as connection:  # the runner's session name did not leak to the pool
        assert connection.execute(text("SHOW application_name")).scalar_one() == "product-images"


def test_a_product_the_table_cannot_take_is_deferred_with_its_reason_and_the_rest_migrate(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    """One product whose JSONB carries another product's image ids (an old app's "duplicate
    listing" copied them) must not stop its tenant's backfill at that batch forever."""
    tenant = make_tenant()
    schema = tenant_schema(tenant)
    first = insert_legacy_product(engine, tenant, [{"url": f"{BASE}/a.jpg"}], source="shopify")
    run_tenant(engine, tenant, RunOptions())
    with engine.begin() as connection:  # the dual-write's format, with the rows' ids
        connection.execute(
            text(
                f"UPDATE {schema}.products SET images = (SELECT jsonb_agg(jsonb_build_object("
                f"'id', id::text, 'url', url, 'order', \"order\")) FROM {schema}.product_images "
                "WHERE product_id = :id) WHERE id = :id"
            ),
            {"id": first},
        )
    before = insert_legacy_product(engine, tenant, [{"url": f"{BASE}/b.jpg"}], source="shopify")
    with engine.begin() as connection:
        copy = connection.execute(
            text(
                f"INSERT INTO {schema}.products (title, price, source, images) "
                f"SELECT 'copy', 10, 'shopify', images FROM {schema}.products WHERE id = :id "
                "RETURNING id"
            ),
            {"id": first},
        ).scalar_one()
    after = insert_legacy_product(engine, tenant, [{"url": f"{BASE}/c.jpg"}], source="shopify")

    result = run_tenant(engine, tenant, RunOptions(deferred_rounds=1))

    assert result.status == "interrupted" and result.deferred == 1
    assert [len(table_elements(engine, tenant, p)) for p in (before, copy, after)] == [1, 0, 1]
    with engine.connect() as connection:
        reason = connection.execute(
            text(f"SELECT reason FROM {schema}.backfill_deferred WHERE product_id = :id"),
            {"id": copy},
        ).scalar_one()
    assert "duplicate key" in reason
