"""Drill: long transactions holding locks the backfill or a migration needs.

Extends tests/backfill/test_runner.py -k locked (there the lock goes at the first retry):
here the product stays locked past every retry round, the run ends `interrupted` with that
one product deferred and everything else migrated, and the next run comes back for it.
And a migration blocked by a long write transaction gives up after its lock_timeout
instead of queueing: writers stuck behind its lock request go on as soon as it gives up."""

from __future__ import annotations

import threading
import time

from sqlalchemy import Engine, text

from app.core import migrate
from app.core.database import tenant_schema
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant
from migrations.tenancy import TenantMigrationFailed
from tests.drills.support import seed_products, table_invariants
from tests.images_db import expected_elements, table_elements

WAIT_BOUND = 10.0


class NoWait:
    """Controls that never stop or pause and do not really sleep between retry rounds."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def should_stop(self) -> bool:
        return False

    def is_paused(self) -> bool:
        return False

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def product_ids(engine: Engine, tenant: int) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text(f"SELECT id FROM {tenant_schema(tenant)}.products ORDER BY id")
            ).scalars()
        )


def test_a_product_locked_through_every_retry_is_deferred_then_migrated_by_the_next_run(
    engine: Engine, tenant: int
) -> None:
    seed_products(engine, tenant, 30, images_each=3)
    products = product_ids(engine, tenant)
    locked = products[11]
    holder = engine.connect()
    holder.execute(
        text(f"SELECT id FROM {tenant_schema(tenant)}.products WHERE id = :id FOR UPDATE"),
        {"id": locked},
    )
    options = RunOptions(initial_batch_size=8, lock_timeout_ms=50, deferred_rounds=3, yield_ratio=0)
    try:
        controls = NoWait()
        first = run_tenant(engine, tenant, options, controls=controls)

        assert first.status == "interrupted"
        assert first.deferred == 1
        assert len(controls.sleeps) == 3, "came back for it once per round, with backoff"
        assert controls.sleeps == sorted(controls.sleeps)
        assert table_elements(engine, tenant, locked) == [], "nothing half-written"
        for product_id in products:
            if product_id != locked:
                assert table_elements(engine, tenant, product_id) == expected_elements(
                    engine, tenant, product_id
                )
        assert not verify_tenant(engine, tenant).is_verified, "the gap is visible"
    finally:
        holder.rollback()
        holder.close()

    second = run_tenant(engine, tenant, options, controls=NoWait())
    assert second.status == "done"
    assert second.deferred == 0
    assert second.run_id == first.run_id, "the same run, resumed"
    assert table_elements(engine, tenant, locked) == expected_elements(engine, tenant, locked)
    assert verify_tenant(engine, tenant).is_verified
    invariants = table_invariants(engine, tenant)
    assert invariants.pop("rows") == 90
    assert invariants == dict.fromkeys(invariants, 0)


def waiting_locks(engine: Engine, schema: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE NOT l.granted AND n.nspname = :schema AND c.relname = 'products'"
                ),
                {"schema": schema},
            ).scalar_one()
        )


def test_a_blocked_migration_gives_up_and_never_parks_writers_behind_it(
    engine: Engine, tenant: int
) -> None:
    schema = tenant_schema(tenant)
    seed_products(engine, tenant, 2, images_each=2)
    first, second = product_ids(engine, tenant)
    migrate.downgrade(engine, revision="0002", tenant_ids=[tenant], lock_retries=0)

    # A long write transaction (ROW EXCLUSIVE on products): the expand's foreign key needs
    # SHARE ROW EXCLUSIVE, which conflicts with it.
    holder = engine.connect()
    holder.execute(
        text(f"UPDATE {schema}.products SET title = 'held' WHERE id = :id"), {"id": first}
    )
    failures: list[BaseException] = []

    def migrate_tenant() -> None:
        try:
            migrate.upgrade(engine, tenant_ids=[tenant], lock_retries=0, lock_timeout_ms=1500)
        except BaseException as exc:  # collected for the main thread
            failures.append(exc)

    migrator = threading.Thread(target=migrate_tenant)
    try:
        migrator.start()
        deadline = time.monotonic() + WAIT_BOUND
        while waiting_locks(engine, schema) == 0:
            assert migrator.is_alive() and time.monotonic() < deadline, failures
            time.sleep(0.02)
        # Another writer now queues behind the migration's lock request: it must go on as
        # soon as the migration gives up, long before the blocker ends (a hang bound).
        with engine.connect() as writer:
            writer.execute(text(f"SET LOCAL lock_timeout = '{int(WAIT_BOUND * 1000)}ms'"))
            writer.execute(
                text(f"UPDATE {schema}.products SET title = 'other writer' WHERE id = :id"),
                {"id": second},
            )
            writer.commit()
        migrator.join(timeout=WAIT_BOUND)
        assert not migrator.is_alive()
        assert holder.in_transaction(), "the blocker was still there all along"
    finally:
        holder.rollback()
        holder.close()
        migrator.join(timeout=WAIT_BOUND)

    assert len(failures) == 1 and isinstance(failures[0], TenantMigrationFailed), failures
    assert schema in str(failures[0]) and "pid " in str(failures[0]), "names the blocker"
    with engine.connect() as connection:
        assert (
            connection.execute(
                text("SELECT to_regclass(:name)"), {"name": f"{schema}.product_images"}
            ).scalar()
            is None
        ), "the failed tenant rolled back whole"

    migrate.upgrade(engine, tenant_ids=[tenant], lock_retries=0)
    with engine.connect() as connection:
        titles = connection.execute(
            text(f"SELECT title FROM {schema}.products ORDER BY id")
        ).scalars()
        assert list(titles) == ["item 1", "other writer"]
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified


def test_a_blocked_migration_retries_then_succeeds_when_the_blocker_ends(
    engine: Engine, tenant: int
) -> None:
    schema = tenant_schema(tenant)
    seed_products(engine, tenant, 1, images_each=2)
    migrate.downgrade(engine, revision="0002", tenant_ids=[tenant], lock_retries=0)
    holder = engine.connect()
    holder.execute(text(f"UPDATE {schema}.products SET title = 'held'"))
    waits: list[float] = []

    def end_blocker(seconds: float) -> None:
        waits.append(seconds)
        if holder.in_transaction():
            holder.rollback()  # the long transaction ends during the backoff

    try:
        migrate.upgrade(
            engine, tenant_ids=[tenant], lock_retries=2, lock_timeout_ms=100, sleep=end_blocker
        )
    finally:
        if holder.in_transaction():
            holder.rollback()
        holder.close()
    assert len(waits) == 1, "one timeout, one backoff, then through"
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
