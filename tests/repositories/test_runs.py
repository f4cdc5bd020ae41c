"""The backfill's run state (app/repositories/migration_state/runs.py): a run planned into
key ranges, a range's progress written with its batches, the run rolled up from its ranges,
and the deferred products, each on real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Connection, Engine, text

from app.core.database import quoted_schema, tenant_schema
from app.repositories.migration_state import deferred, runs
from app.repositories.migration_state.runs import KeyRange, bounds, run_status
from tests.images_db import insert_legacy_product


def products(engine: Engine, tenant: int, count: int) -> list[int]:
    return [insert_legacy_product(engine, tenant, []) for _ in range(count)]


def planned(connection: Connection, schema: str, parts: int) -> runs.Plan:
    return runs.start_or_resume(connection, schema, parts=parts, worker="test")


def test_ranges_are_cut_at_increasing_points_from_zero_to_no_end() -> None:
    assert bounds([]) == [(0, None)]
    assert bounds([10, 20]) == [(0, 10), (10, 20), (20, None)]
    assert bounds([10, 10, 5]) == [(0, 10), (10, None)], "repeated points are dropped"


@pytest.mark.parametrize(
    ("statuses", "run"),
    [
        (["done", "done"], "done"),
        (["done", "running"], "running"),
        (["done", "interrupted"], "interrupted"),
        (["done", "pending"], "interrupted"),
        (["pending", "pending"], "pending"),
        (["failed", "running"], "running"),
        (["failed", "done"], "failed"),
    ],
)
def test_a_run_is_done_only_when_every_range_is(statuses: list[str], run: str) -> None:
    assert run_status(statuses) == run


def test_a_plan_is_kept_and_a_second_start_resumes_it(engine: Engine, tenant: int) -> None:
    ids = products(engine, tenant, 8)
    schema = quoted_schema(tenant_schema(tenant))
    with engine.connect() as connection:
        plan = planned(connection, schema, 2)
        again = planned(connection, schema, 4)  # a resume keeps the split it has
    assert again == plan
    assert [r.range_no for r in plan.ranges] == [0, 1]
    assert plan.ranges[0].lower == 0 and plan.ranges[-1].upper is None
    assert plan.ranges[0].upper == plan.ranges[1].lower, "no gap, no overlap"
    assert ids[0] <= plan.ranges[0].last_id < ids[-1]


def test_batches_advance_their_range_and_the_run_is_their_sum(engine: Engine, tenant: int) -> None:
    ids = products(engine, tenant, 6)
    schema = quoted_schema(tenant_schema(tenant))
    with engine.connect() as connection:
        plan = planned(connection, schema, 2)
        first, second = plan.ranges
        with connection.begin():
            runs.record_batch(
                connection,
                schema,
                first,
                ids=ids[:2],
                checkpoint=ids[1],
                inserted=5,
                rejected=1,
                size=2,
                lock_timeouts=0,
            )
            runs.record_batch(
                connection,
                schema,
                second,
                ids=ids[3:4],
                checkpoint=ids[3],
                inserted=2,
                rejected=0,
                size=1,
                lock_timeouts=3,
            )
            assert runs.finish_range(
                connection, schema, first, status="done", error=None, lock_timeouts=0
            ) in ("running", "interrupted", "pending")
        with connection.begin():
            status = runs.finish_range(
                connection, schema, second, status="done", error=None, lock_timeouts=3
            )
        assert status == "done" == runs.status_of_run(connection, schema, plan.run_id)
        (latest,) = runs.recent(connection, schema, limit=1)
    assert latest["id"] == plan.run_id
    assert (latest["products_scanned"], latest["images_inserted"], latest["rejected"]) == (3, 7, 1)
    assert latest["batches"] == 2 and latest["finished_at"] is not None


def test_a_run_checkpoint_is_the_end_of_its_finished_prefix(engine: Engine, tenant: int) -> None:
    ids = products(engine, tenant, 6)
    schema = quoted_schema(tenant_schema(tenant))
    with engine.connect() as connection:
        plan = planned(connection, schema, 2)
        first, second = plan.ranges
        with connection.begin():  # the second range ran ahead; the first is still at its start
            runs.record_batch(
                connection,
                schema,
                second,
                ids=[ids[-1]],
                checkpoint=ids[-1],
                inserted=1,
                rejected=0,
                size=1,
                lock_timeouts=0,
            )
            runs.finish_range(
                connection, schema, second, status="done", error=None, lock_timeouts=0
            )
        checkpoint = connection.execute(
            text(f"SELECT checkpoint FROM {schema}.backfill_runs WHERE id = :id"),
            {"id": plan.run_id},
        ).scalar_one()
    assert checkpoint == first.checkpoint, "every product up to it is handled"


def test_deferred_products_are_kept_per_range_with_their_reason(
    engine: Engine, tenant: int
) -> None:
    ids = products(engine, tenant, 6)
    schema = quoted_schema(tenant_schema(tenant))
    with engine.connect() as connection:
        plan = planned(connection, schema, 2)
        first, second = plan.ranges
        low, high = ids[0], ids[-1]
        with connection.begin():
            deferred.defer(connection, schema, first, low, "locked")
            deferred.defer(connection, schema, second, high, "locked")
            deferred.defer(connection, schema, first, low, "locked again")  # once, counted twice
        with connection.begin():
            assert deferred.deferred_in(connection, schema, first) == [low]
            assert deferred.deferred_in(connection, schema, second) == [high]
            assert deferred.count_deferred(connection, schema, first) == 1
            deferred.still_refused(connection, schema, low, "violates check constraint")
            row = connection.execute(
                text(
                    f"SELECT reason, attempts FROM {schema}.backfill_deferred "
                    "WHERE product_id = :id"
                ),
                {"id": low},
            ).one()
            assert (row.reason, row.attempts) == ("violates check constraint", 3)
            moved = connection.execute(
                text(
                    f"SELECT checkpoint, deferred FROM {schema}.backfill_ranges "
                    "WHERE run_id = :run AND range_no = 0"
                ),
                {"run": plan.run_id},
            ).one()
            assert (moved.checkpoint, moved.deferred) == (low, 2), "the range moved past it"
        with connection.begin():
            deferred.forget_deferred(connection, schema, [low, high])
            assert deferred.count_deferred(connection, schema, first) == 0
            assert deferred.deferred_in(connection, schema, second) == []


def test_a_range_ends_at_its_upper_bound_or_at_the_last_bigint() -> None:
    part = KeyRange(run_id=1, range_no=0, lower=10, upper=20, checkpoint=10)
    assert part.last_id == 20 and not part.is_done
    assert KeyRange(1, 1, 20, None, 20).last_id == runs.NO_UPPER_BOUND
