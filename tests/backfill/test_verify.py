"""Verification: JSONB and table agree per product, every element is a row or a reported
rejection; drift is found, classified, and clears the verified state."""

from __future__ import annotations

import queue
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, create_engine, text

from app.core.database import tenant_schema, unit_of_work
from app.core.settings import get_settings
from app.images import Image, image_to_element, normalise_legacy
from app.images.differences import EXTRA, FIELD_DIFFERS, MISSING, REORDERED
from app.services.product_image_service import NewImage, ProductImageService
from backfill import verify as verification
from backfill.runner import RunOptions, run_tenant
from backfill.verify import checked_since, verified_at, verify_tenant
from tests.backfill.test_runner import BASE, DIRTY, seed
from tests.images_db import assert_representations_equal, insert_legacy_product, table_elements


def sql(engine: Engine, statement: str, **params: object) -> None:
    with engine.begin() as connection:
        connection.execute(text("SET CONSTRAINTS ALL DEFERRED"))
        connection.execute(text(statement), params)


def test_a_backfilled_tenant_verifies_and_is_recorded(engine: Engine, tenant: int) -> None:
    seed(engine, tenant, copies=2)
    run_tenant(engine, tenant, RunOptions())

    report = verify_tenant(engine, tenant)

    assert report.is_verified, report.mismatches
    assert report.jsonb_elements == report.table_rows + report.rejected
    assert report.rejected == 8
    assert report.labels == report.expected_labels > 0
    assert verified_at(engine, tenant) is not None


def test_an_unmigrated_product_is_missing_and_blocks_verification(
    engine: Engine, tenant: int
) -> None:
    seed(engine, tenant)
    run_tenant(engine, tenant, RunOptions())
    late = insert_legacy_product(engine, tenant, DIRTY[0])

    report = verify_tenant(engine, tenant)

    assert not report.is_verified
    assert [(m.product_id, m.kind) for m in report.mismatches] == [(late, MISSING)]
    assert verified_at(engine, tenant) is None


def test_drift_written_behind_the_dual_write_is_classified_and_clears_verified(
    engine: Engine, tenant: int
) -> None:
    products = seed(engine, tenant)
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    schema = tenant_schema(tenant)
    changed, reordered, extra = products[0], products[6], products[1]
    sql(
        engine,
        f"UPDATE {schema}.product_images SET alt_text = 'by hand' "
        'WHERE product_id = :p AND "order" = 0',
        p=changed,
    )
    sql(
        engine,
        f'UPDATE {schema}.product_images SET "order" = 1 - "order" WHERE product_id = :p',
        p=reordered,
    )
    sql(
        engine,
        f'INSERT INTO {schema}.product_images (id, product_id, url, "order") '
        "VALUES (gen_random_uuid(), :p, 'http://elsewhere/x.jpg', 99)",
        p=extra,
    )

    report = verify_tenant(engine, tenant)

    kinds = {m.product_id: m.kind for m in report.mismatches}
    assert kinds == {changed: FIELD_DIFFERS, reordered: REORDERED, extra: EXTRA}
    assert "alt_text" in next(m.detail for m in report.mismatches if m.product_id == changed)
    assert verified_at(engine, tenant) is None


def test_verify_since_rechecks_only_recent_products(engine: Engine, tenant: int) -> None:
    products = seed(engine, tenant)
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    cutoff = datetime.now(UTC).isoformat()
    sql(
        engine,
        f"UPDATE {tenant_schema(tenant)}.products SET updated_at = now() WHERE id = :p",
        p=products[0],
    )

    report = verify_tenant(engine, tenant, since=cutoff)

    assert report.products == 1
    assert report.is_verified


def test_backfill_concurrent_with_api_writes_ends_verified(engine: Engine, tenant: int) -> None:
    import threading

    products = seed(engine, tenant, copies=6)
    service = ProductImageService(legacy_sources=["pythonApiWOO"], max_images=100, url_bases=[BASE])
    stop = threading.Event()
    errors: list[BaseException] = []
    touched: set[int] = set()

    def writer() -> None:
        step = 0
        while not stop.is_set() and step < 200:
            stop.wait(0.002)
            product = products[step % len(products)]
            step += 1
            try:
                with unit_of_work(engine, tenant) as session:
                    service.add_image(
                        session,
                        product_id=product,
                        image_data=NewImage(url=f"{BASE}/live/{step}.jpg"),
                        position=0,
                        now=datetime.now(UTC),
                    )
                touched.add(product)
            except BaseException as exc:
                errors.append(exc)
                return

    thread = threading.Thread(target=writer)
    thread.start()
    while len(touched) < 3 and thread.is_alive():
        stop.wait(0.01)
    try:
        result = run_tenant(engine, tenant, RunOptions(batch_size=2))
    finally:
        stop.set()
        thread.join()

    assert errors == []
    assert result.status == "done"
    report = verify_tenant(engine, tenant)
    assert report.is_verified, report.mismatches[:5]
    assert touched, "the writer ran during the backfill"
    for product in touched:  # written by the dual-write: both representations hold full rows
        assert_representations_equal(engine, tenant, product)


def _drift_every_way(engine: Engine, tenant: int, products: list[int]) -> None:
    """One product per kind of difference, spread over the tenant."""
    schema = tenant_schema(tenant)
    table = f"{schema}.product_images"
    sql(engine, f"UPDATE {table} SET alt_text = 'by hand' WHERE product_id = :p", p=products[0])
    sql(engine, f'UPDATE {table} SET "order" = 1 - "order" WHERE product_id = :p', p=products[6])
    sql(
        engine,
        f'INSERT INTO {table} (id, product_id, url, "order") '
        "VALUES (gen_random_uuid(), :p, 'http://elsewhere/x.jpg', 99)",
        p=products[8],
    )
    sql(engine, f"DELETE FROM {table} WHERE product_id = :p", p=products[14])
    sql(
        engine,
        f"UPDATE {table} SET file_size = NULL, width = 500 WHERE product_id = :p",
        p=products[20],
    )


def test_verify_gives_the_same_report_whatever_the_chunk_size(
    engine: Engine, tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    products = seed(engine, tenant, copies=3)
    run_tenant(engine, tenant, RunOptions())
    _drift_every_way(engine, tenant, products)
    whole = verify_tenant(engine, tenant)

    monkeypatch.setattr(verification, "CHUNK", 4)  # 21 products: six chunks, one short
    chunked = verify_tenant(engine, tenant)

    counted = ("products", "jsonb_elements", "table_rows", "labels", "expected_rows")
    assert [getattr(chunked, name) for name in counted] == [
        getattr(whole, name) for name in counted
    ]
    assert (chunked.expected_labels, chunked.rejected, chunked.rejected_unreported) == (
        whole.expected_labels,
        whole.rejected,
        whole.rejected_unreported,
    )
    assert chunked.mismatches == whole.mismatches
    assert chunked.mismatched_products == whole.mismatched_products == 5


@pytest.mark.parametrize("workers", [2, 3])
def test_several_connections_report_what_one_connection_reports(
    engine: Engine, tenant: int, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    products = seed(engine, tenant, copies=3)
    run_tenant(engine, tenant, RunOptions())
    _drift_every_way(engine, tenant, products)
    monkeypatch.setattr(verification, "CHUNK", 2)  # 21 products: eleven chunks
    heard: list[int] = []

    alone = verify_tenant(engine, tenant, workers=1)
    shared = verify_tenant(engine, tenant, workers=workers, progress=heard.append)

    assert {**shared.summary(), "seconds": 0} == {**alone.summary(), "seconds": 0}
    assert shared.mismatched_products == 5 and shared.rejected > 0
    assert sum(heard) == len(products), "every chunk heard of, in the caller's thread"


def test_every_connection_compares_in_the_snapshot_that_marks_verified(
    engine: Engine, tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rows of the last product go after the lead took (and exported) its snapshot and
    # before the workers start (a table write the safety net does not log). A worker on a
    # snapshot of its own would see them gone; in the lead's snapshot, the one whose drift
    # generation the mark compares against, they are there: the pass is clean, as on one
    # connection.
    products = seed(engine, tenant, copies=3)
    run_tenant(engine, tenant, RunOptions())
    monkeypatch.setattr(verification, "CHUNK", 2)
    last = max(products)
    prepare = verification._prepare_comparison
    removed: list[int] = []

    def remove_once_the_snapshot_is_exported(connection: Connection, schema: str) -> object:
        if not removed:  # the lead's call: after pg_export_snapshot, before any worker
            sql(
                engine,
                f"DELETE FROM {tenant_schema(tenant)}.product_images WHERE product_id = :id",
                id=last,
            )
            removed.append(last)
        return prepare(connection, schema)

    monkeypatch.setattr(verification, "_prepare_comparison", remove_once_the_snapshot_is_exported)
    report = verify_tenant(engine, tenant, workers=2)

    assert removed == [last]
    assert report.is_verified and report.mismatched_products == 0
    again = verify_tenant(engine, tenant, workers=2)
    assert {(m.product_id, m.kind) for m in again.mismatches} == {(last, MISSING)}


def test_a_progress_that_raises_stops_every_connection(
    engine: Engine, tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(engine, tenant, copies=3)
    run_tenant(engine, tenant, RunOptions())
    monkeypatch.setattr(verification, "CHUNK", 1)

    class Cancelled(Exception):
        pass

    def cancel(_products: int) -> None:
        raise Cancelled

    with pytest.raises(Cancelled):
        verify_tenant(engine, tenant, workers=2, progress=cancel)
    assert verified_at(engine, tenant) is None
    with engine.connect() as connection:  # no worker left behind holding a snapshot
        lingering = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert lingering == 0


def _small_pool(engine: Engine, connections: int) -> Engine:
    return create_engine(engine.url, pool_size=connections, max_overflow=0, pool_timeout=0.5)


def test_workers_without_a_connection_leave_the_chunks_to_the_others(
    engine: Engine, tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(engine, tenant, copies=3)
    run_tenant(engine, tenant, RunOptions())
    monkeypatch.setattr(verification, "CHUNK", 2)
    small = _small_pool(engine, 2)  # the lead and one worker; two more ask in vain
    try:
        report = verify_tenant(small, tenant, workers=3)
        assert report.is_verified
        assert report.products == 21 and report.table_rows == report.expected_rows

        alone = _small_pool(engine, 1)  # the lead only: refused, never a partial report
        try:
            with pytest.raises(RuntimeError, match="no worker connection left"):
                verify_tenant(alone, tenant, workers=2)
        finally:
            alone.dispose()
    finally:
        small.dispose()


def test_a_worker_that_gave_up_early_does_not_fail_the_pass_at_its_end(
    engine: Engine, tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The second worker gives up on the pool long before the end; the first compares every
    # chunk and, at the end, takes its end marker: the pass is whole, not "no worker left".
    seed(engine, tenant, copies=3)
    run_tenant(engine, tenant, RunOptions())
    monkeypatch.setattr(verification, "CHUNK", 2)
    compare = verification._compare_chunk

    def slowly(*args: Any) -> list[int]:
        time.sleep(0.1)  # eleven chunks: about a second, the pool gives up after 0.5 s
        return compare(*args)

    class SlowEnd(queue.Queue[object]):
        def put(self, item: object, block: bool = True, timeout: float | None = None) -> None:
            super().put(item, block, timeout)
            if item is verification._DONE:  # the first worker finishes before the next marker
                time.sleep(0.5)

    monkeypatch.setattr(verification, "_compare_chunk", slowly)
    monkeypatch.setattr(verification.queue, "Queue", SlowEnd)
    small = _small_pool(engine, 2)
    try:
        assert verify_tenant(small, tenant, workers=2).is_verified
    finally:
        small.dispose()


def test_a_worker_that_cannot_start_leaves_no_thread_nor_snapshot_behind(
    engine: Engine, tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(engine, tenant, copies=3)
    run_tenant(engine, tenant, RunOptions())
    started: list[str] = []

    class SecondFails(threading.Thread):
        def start(self) -> None:
            if started:
                raise RuntimeError("can't start new thread")
            started.append(self.name)
            super().start()

    monkeypatch.setattr(verification.threading, "Thread", SecondFails)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        verify_tenant(engine, tenant, workers=2)
    monkeypatch.undo()

    assert not [t for t in threading.enumerate() if t.name == "verify-worker"]
    with engine.connect() as connection:
        lingering = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert lingering == 0


def test_verify_finds_exactly_the_products_whose_ordered_rows_differ(
    engine: Engine, tenant: int
) -> None:
    products = seed(engine, tenant, copies=3)
    run_tenant(engine, tenant, RunOptions())
    _drift_every_way(engine, tenant, products)

    report = verify_tenant(engine, tenant)

    # The definition verify's join stands for: a product's expected images (its JSONB,
    # normalised in Python) and its rows, each in order, are two different lists.
    differing = {
        product
        for product in products
        if [image_to_element(image) for image in _normalised(engine, tenant, product)]
        != table_elements(engine, tenant, product)
    }
    assert differing == {products[i] for i in (0, 6, 8, 14, 20)}
    assert {m.product_id for m in report.mismatches} == differing
    assert report.mismatched_products == len(differing)


def test_verify_counts_what_the_tables_hold(engine: Engine, tenant: int) -> None:
    seed(engine, tenant, copies=2)
    run_tenant(engine, tenant, RunOptions())
    schema = tenant_schema(tenant)

    report = verify_tenant(engine, tenant)

    with engine.connect() as connection:
        row = connection.execute(
            text(
                f"""
                SELECT (SELECT count(*) FROM {schema}.products) AS products,
                       (SELECT sum(CASE jsonb_typeof(images) WHEN 'array'
                                   THEN jsonb_array_length(images) ELSE 1 END)
                          FROM {schema}.products) AS elements,
                       (SELECT count(*) FROM {schema}.product_images) AS rows,
                       (SELECT count(*) FROM {schema}.product_images WHERE is_label) AS labels,
                       (SELECT count(*) FROM {schema}.rejected_image_elements) AS rejected
                """
            )
        ).one()
    assert (report.products, report.jsonb_elements) == (row.products, row.elements)
    assert (report.table_rows, report.labels) == (row.rows, row.labels)
    assert (report.expected_rows, report.expected_labels) == (row.rows, row.labels)
    assert report.rejected == row.rejected
    assert report.is_verified


def _normalised(engine: Engine, tenant: int, product: int) -> tuple[Image, ...]:
    with engine.connect() as connection:
        row = connection.execute(
            text(
                f"SELECT images, source, created_at FROM {tenant_schema(tenant)}.products "
                "WHERE id = :p"
            ),
            {"p": product},
        ).one()
    return normalise_legacy(
        row.images,
        product_id=product,
        product_created_at=row.created_at,
        is_legacy_source=row.source in get_settings().legacy_sources,
    ).images


# Fixed offsets: what an operator types (a named zone's DST gap has no single instant).
FIXED_OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@given(st.datetimes(timezones=FIXED_OFFSETS))
def test_checked_since_keeps_every_past_aware_instant(moment: datetime) -> None:
    now = datetime(2100, 1, 1, tzinfo=UTC)
    if moment > now:
        with pytest.raises(ValueError, match="future"):
            checked_since(moment.isoformat(), now)
    else:
        assert datetime.fromisoformat(checked_since(moment.isoformat(), now)) == moment


@given(st.datetimes())
def test_checked_since_refuses_a_naive_time(moment: datetime) -> None:
    with pytest.raises(ValueError, match="no time zone"):
        checked_since(moment.isoformat(), datetime(2100, 1, 1, tzinfo=UTC))
