"""Parallel workers within one tenant (issue 21, item 2): the run split into key ranges from
the keyset, one worker per range, on real PostgreSQL. Concurrency is proven with barriers,
never with timings."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from app.console.state import recent_runs
from app.core.database import quoted_schema, tenant_schema, unit_of_work
from app.repositories.migration_state import claims, runs
from app.repositories.migration_state.runs import RangeRef, bounds
from app.repositories.tenant_facts import tenant_facts
from backfill.runner import RunOptions, TenantBusy, run_tenant
from backfill.status import tenant_status
from backfill.verify import verify_tenant
from tests.backfill.test_cli import (
    backfill,
    image_rows,
    many_products,
    start_backfill,
    wait_until,
)
from tests.backfill.test_runner import Scripted, seed
from tests.images_db import expected_elements, table_elements

COPIES = 6  # 42 products of every shape test_runner.DIRTY has: 21 a range, 6 batches of 4


def range_rows(engine: Engine, tenant: int) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text(
                    "SELECT run_id, range_no, lower_bound, upper_bound, checkpoint, status, "
                    "products_scanned, images_inserted, rejected "
                    f"FROM {tenant_schema(tenant)}.backfill_ranges ORDER BY run_id, range_no"
                )
            ).all()
        )


def run_rows(engine: Engine, tenant: int) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text(
                    "SELECT id, status, checkpoint, products_scanned, images_inserted, rejected "
                    f"FROM {tenant_schema(tenant)}.backfill_runs ORDER BY id"
                )
            ).all()
        )


def rejected_rows(engine: Engine, tenant: int) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text(
                    "SELECT product_id, position, reason FROM "
                    f"{tenant_schema(tenant)}.rejected_image_elements ORDER BY 1, 2, 3"
                )
            ).all()
        )


def is_backfilled(engine: Engine, tenant: int) -> tuple[bool, bool]:
    """What `backfill status` (and the console) and each request's stage facts say."""
    (status,) = tenant_status(engine, [tenant])
    with unit_of_work(engine, tenant) as session:
        facts = tenant_facts(session)
    return status.is_backfilled, facts.is_backfilled


def plan_of_two(engine: Engine, tenant: int) -> runs.Plan:
    with engine.connect() as connection:
        return runs.start_or_resume(
            connection, quoted_schema(tenant_schema(tenant)), parts=2, worker="test"
        )


def held_ranges(engine: Engine, tenant: int) -> list[tuple[int, int]]:
    """(range, backend pid) of each range lock held now."""
    key = claims.tenant_lock_key(quoted_schema(tenant_schema(tenant)))
    with engine.connect() as connection:
        return [
            (int(r.objid), int(r.pid))
            for r in connection.execute(
                text(
                    "SELECT objid, pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND objsubid = 2 AND classid = CAST(hashtext(:key) AS oid) ORDER BY objid"
                ),
                {"key": key},
            )
        ]


class MeetAtSecondBatch(Scripted):
    """Each worker, before its second batch, waits for the other at a barrier: with one
    worker after the other the barrier breaks and the run fails. While both wait, `inside`
    is set with what was seen, and they go on when `leave` is set."""

    def __init__(self, engine: Engine, tenant: int, *, hold: bool = False) -> None:
        super().__init__()
        self.seen: dict[str, Any] = {}
        self.inside = threading.Event()
        self.leave = threading.Event()
        if not hold:
            self.leave.set()
        self._batches = threading.local()
        schema = quoted_schema(tenant_schema(tenant))

        def both_arrived() -> None:
            self.seen["held"] = held_ranges(engine, tenant)
            with engine.connect() as connection:
                self.seen["live_workers"] = claims.live_workers(connection, schema)
            self.inside.set()

        # The timeout only bounds a hang: a worker alone waits for its sibling forever.
        self.barrier = threading.Barrier(2, action=both_arrived, timeout=120)

    def is_paused(self) -> bool:
        count = getattr(self._batches, "count", 0) + 1
        self._batches.count = count
        if count == 2:
            self.barrier.wait()
            self.leave.wait(120)
        return False


def test_two_workers_write_exactly_the_rows_one_worker_writes(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    alone, paired = make_tenant(), make_tenant()
    products = seed(engine, alone, copies=COPIES)
    assert seed(engine, paired, copies=COPIES) == products  # same ids in both schemas

    one = run_tenant(engine, alone, RunOptions(batch_size=4))
    two = run_tenant(engine, paired, RunOptions(batch_size=4, workers=2))

    assert one.status == two.status == "done"
    assert two.ranges == {0: "done", 1: "done"}
    parts = range_rows(engine, paired)
    assert [p.range_no for p in parts] == [0, 1]
    assert parts[0].upper_bound == parts[1].lower_bound, "adjacent ranges: no gap"
    assert all(p.products_scanned > 0 for p in parts), "both workers had work"
    assert sum(p.products_scanned for p in parts) == len(products), "each product once"
    assert two.products_scanned == one.products_scanned == len(products)
    assert two.images_inserted == one.images_inserted
    for product_id in products:
        rows = table_elements(engine, paired, product_id)
        assert rows == table_elements(engine, alone, product_id)
        assert rows == expected_elements(engine, paired, product_id)
    assert rejected_rows(engine, paired) == rejected_rows(engine, alone)
    assert image_rows(engine, paired)[0] == image_rows(engine, paired)[1], "no duplicate"
    assert verify_tenant(engine, paired).is_verified


def test_two_ranges_are_worked_at_the_same_time_each_by_its_own_session(
    engine: Engine, tenant: int
) -> None:
    products = seed(engine, tenant, copies=COPIES)
    meet = MeetAtSecondBatch(engine, tenant)

    result = run_tenant(engine, tenant, RunOptions(batch_size=4, workers=2), controls=meet)

    assert result.status == "done", "both workers met between their batches"
    held = meet.seen["held"]
    assert [range_no for range_no, _pid in held] == [0, 1]
    assert len({pid for _range, pid in held}) == 2, "two sessions, one per range"
    assert meet.seen["live_workers"] == 2, "a rate is shared between the two"
    assert result.products_scanned == len(products)
    for product_id in products:
        assert table_elements(engine, tenant, product_id) == expected_elements(
            engine, tenant, product_id
        )


def test_a_third_worker_is_refused_while_both_ranges_are_held(engine: Engine, tenant: int) -> None:
    seed(engine, tenant, copies=COPIES)
    meet = MeetAtSecondBatch(engine, tenant, hold=True)
    outcome: dict[str, Any] = {}

    def two_workers() -> None:
        outcome["result"] = run_tenant(
            engine, tenant, RunOptions(batch_size=4, workers=2), controls=meet
        )

    pair = threading.Thread(target=two_workers)
    pair.start()
    try:
        assert meet.inside.wait(120), "both workers are inside their ranges"
        (run,) = run_rows(engine, tenant)
        with pytest.raises(TenantBusy):
            run_tenant(engine, tenant, RunOptions())
        with pytest.raises(TenantBusy):
            run_tenant(engine, tenant, RunOptions(workers=2))
        with pytest.raises(TenantBusy):  # a job for one of the ranges
            run_tenant(engine, tenant, RunOptions(), only=RangeRef(run.id, 1))
    finally:
        meet.leave.set()
        pair.join()

    assert outcome["result"].status == "done"
    assert len(run_rows(engine, tenant)) == 1, "the refused workers started no run"


def test_a_run_with_one_range_done_resumes_only_the_other_with_the_same_ranges(
    engine: Engine, tenant: int
) -> None:
    products = seed(engine, tenant, copies=COPIES)
    plan = plan_of_two(engine, tenant)
    first = run_tenant(engine, tenant, RunOptions(batch_size=4), only=RangeRef(plan.run_id, 0))
    second = run_tenant(
        engine,
        tenant,
        RunOptions(batch_size=4),
        controls=Scripted(stop_after_checks=2),
        only=RangeRef(plan.run_id, 1),
    )
    before = range_rows(engine, tenant)
    (run,) = run_rows(engine, tenant)

    assert first.ranges == {0: "done"} and second.ranges == {1: "interrupted"}
    assert first.status == "interrupted", "the run is not done while a range is left"
    assert [p.status for p in before] == ["done", "interrupted"]
    assert run.status == "interrupted"
    assert is_backfilled(engine, tenant) == (False, False)
    assert run.products_scanned == sum(p.products_scanned for p in before) == 21 + 8
    assert run.images_inserted == sum(p.images_inserted for p in before)
    assert run.checkpoint == before[1].checkpoint, "the run's checkpoint ends its done prefix"
    (status,) = tenant_status(engine, [tenant])
    assert status.last_run_status == "interrupted"
    (listed,) = recent_runs(engine, tenant)  # the console's tenant page: one run, its sums
    assert (listed["status"], listed["products_scanned"]) == ("interrupted", 29)

    resumed = run_tenant(engine, tenant, RunOptions(batch_size=4, workers=2))
    after = range_rows(engine, tenant)
    (run,) = run_rows(engine, tenant)

    assert resumed.run_id == plan.run_id, "the unfinished run is resumed, not restarted"
    assert resumed.ranges == {1: "done"}, "the done range is not worked again"
    assert resumed.products_scanned == len(products) - 21 - 8
    assert [(p.lower_bound, p.upper_bound) for p in after] == [
        (p.lower_bound, p.upper_bound) for p in before
    ], "the same ranges"
    assert after[0] == before[0], "the done range is untouched"
    assert resumed.status == run.status == "done"
    assert is_backfilled(engine, tenant) == (True, True)
    assert run.products_scanned == len(products), "the run row adds up its ranges"
    (listed,) = recent_runs(engine, tenant)
    assert (listed["status"], listed["products_scanned"]) == ("done", len(products))
    assert run.images_inserted == image_rows(engine, tenant)[0]
    assert run.rejected == len(rejected_rows(engine, tenant))
    for product_id in products:
        assert table_elements(engine, tenant, product_id) == expected_elements(
            engine, tenant, product_id
        )


def test_one_worker_takes_every_range_of_a_split_run_in_turn(engine: Engine, tenant: int) -> None:
    products = seed(engine, tenant, copies=COPIES)
    plan = plan_of_two(engine, tenant)

    result = run_tenant(engine, tenant, RunOptions(batch_size=4))

    assert (result.run_id, result.status) == (plan.run_id, "done")
    assert result.ranges == {0: "done", 1: "done"}
    assert result.products_scanned == len(products)


def test_a_killed_two_worker_run_resumes_with_the_same_ranges_no_duplicate_and_no_gap(
    database_url: str, engine: Engine, tenant: int, tmp_path: Path
) -> None:
    many_products(engine, tenant, 3000, images_each=4)
    process = start_backfill(
        database_url,
        *("run", "--tenant", str(tenant), "--workers", "2", "--batch-size", "20"),
        *("--max-rate", "4000"),
        tmp=tmp_path,
    )
    wait_until(lambda: image_rows(engine, tenant)[0] >= 2000)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    killed = range_rows(engine, tenant)
    assert 0 < image_rows(engine, tenant)[0] < 12000, "killed mid-run"
    assert [p.status for p in killed] == ["running", "running"], "both ranges were going"

    resumed = backfill(database_url, "run", "--tenant", str(tenant), "--workers", "2", tmp=tmp_path)
    verified = backfill(database_url, "verify", "--tenant", str(tenant), tmp=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    assert image_rows(engine, tenant) == (12000, 12000)
    assert verified.returncode == 0, verified.stderr
    after = range_rows(engine, tenant)
    assert [(p.run_id, p.lower_bound, p.upper_bound) for p in after] == [
        (p.run_id, p.lower_bound, p.upper_bound) for p in killed
    ]
    assert [p.status for p in after] == ["done", "done"]
    (run,) = run_rows(engine, tenant)
    assert run.status == "done"
    assert run.images_inserted == 12000, "the killed batches were rolled back, not counted"


def test_the_split_comes_from_the_keyset_and_a_small_tenant_gets_fewer_ranges(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, small, empty = make_tenant(), make_tenant(), make_tenant()
    many_products(engine, tenant, 100, images_each=1)
    many_products(engine, small, 2, images_each=1)
    with engine.connect() as connection:
        cut = runs.split_points(connection, quoted_schema(tenant_schema(tenant)), 4)
        tiny = runs.split_points(connection, quoted_schema(tenant_schema(small)), 4)
        none = runs.split_points(connection, quoted_schema(tenant_schema(empty)), 4)
        ids = list(
            connection.execute(
                text(f"SELECT id FROM {tenant_schema(tenant)}.products ORDER BY id")
            ).scalars()
        )
    assert cut == [ids[24], ids[49], ids[74]], "quartiles of products.id"
    assert len(bounds(tiny)) < 4, "two products: repeated cut points dropped"
    assert bounds(none) == [(0, None)]


def test_one_job_per_range_on_a_worker_pool_finishes_the_run_with_each_range_once(
    database_url: str, engine: Engine, tenant: int, tmp_path: Path
) -> None:
    from backfill import job_runs
    from backfill.enqueue import enqueue_backfill_ranges
    from backfill.jobs import build_app, register_tasks
    from tests.backfill.test_jobs import job_statuses, real_worker, wait_for_run

    many_products(engine, tenant, 400, images_each=2)
    queue = build_app(database_url)
    register_tasks(queue)

    queued = enqueue_backfill_ranges(
        [tenant], ranges_each=2, procrastinate_app=queue, engine=engine, batch_size=20
    )[tenant]
    again = enqueue_backfill_ranges([tenant], ranges_each=2, procrastinate_app=queue, engine=engine)

    assert sorted(queued) == [0, 1] and all(ids is not None for ids in queued.values())
    assert again == {tenant: {0: None, 1: None}}, "one queued job per range of the run"
    (run,) = run_rows(engine, tenant)
    assert run.status == "pending", "planned, not begun"
    with engine.connect() as connection:
        locks = connection.execute(
            text("SELECT lock FROM procrastinate.procrastinate_jobs WHERE id = ANY(:ids)"),
            {"ids": [ids[1] for ids in queued.values() if ids]},
        ).scalars()
        assert len(set(locks)) == 2, "the ranges' jobs may run at once"
    with real_worker(database_url, tmp_path, concurrency=2):
        finished = [wait_for_run(engine, ids[0]) for ids in queued.values() if ids]
    job_ids = [ids[1] for ids in queued.values() if ids]

    assert set(job_statuses(engine, job_ids)) == {"succeeded"}
    assert [r.state for r in finished] == ["done", "done"]
    assert sum(r.total or 0 for r in finished) == 400, "each job's total is its range's"
    assert sum(r.done for r in finished) == 400
    results = [job_runs.get(engine, r.id) for r in finished]
    assert all(r is not None and r.result is not None for r in results)
    assert image_rows(engine, tenant) == (800, 800)
    assert [p.status for p in range_rows(engine, tenant)] == ["done", "done"]
    (run,) = run_rows(engine, tenant)
    assert (run.status, run.products_scanned) == ("done", 400)
    assert verify_tenant(engine, tenant).is_verified


def test_a_run_interrupted_before_ranges_existed_resumes_as_one_range_from_its_checkpoint(
    engine: Engine, tenant: int
) -> None:
    products = seed(engine, tenant, copies=2)
    done_before = products[:5]
    run_tenant(engine, tenant, RunOptions(batch_size=5), controls=Scripted(stop_after_checks=1))
    with engine.begin() as connection:  # as revision 0015's runner left it: no range rows
        connection.execute(text(f"DELETE FROM {tenant_schema(tenant)}.backfill_ranges"))
    (run,) = run_rows(engine, tenant)
    assert (run.status, run.checkpoint) == ("interrupted", done_before[-1])

    resumed = run_tenant(engine, tenant, RunOptions(batch_size=5, workers=2))

    assert (resumed.run_id, resumed.status) == (run.id, "done")
    assert resumed.products_scanned == len(products) - len(done_before)
    assert [(p.lower_bound, p.upper_bound) for p in range_rows(engine, tenant)] == [(0, None)]
    for product_id in products:
        assert table_elements(engine, tenant, product_id) == expected_elements(
            engine, tenant, product_id
        )


def test_a_failed_worker_stops_its_sibling_and_a_rerun_resumes_the_same_run(
    engine: Engine, tenant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import backfill.runner as runner

    products = seed(engine, tenant, copies=COPIES)
    batch_after = runner._batch_after
    calls = 0
    guard = threading.Lock()
    failing: list[threading.Thread] = []

    def third_batch_fails(*args: Any, **kwargs: Any) -> Any:
        """The third batch fails; the other worker's next batch waits until the failing
        worker has ended (it has told its sibling to stop by then)."""
        nonlocal calls
        with guard:
            calls += 1
            if calls == 3:
                failing.append(threading.current_thread())
                raise RuntimeError("the database went away")
        if failing and failing[0] is not threading.current_thread():
            failing[0].join(120)
        return batch_after(*args, **kwargs)

    monkeypatch.setattr(runner, "_batch_after", third_batch_fails)
    with pytest.raises(RuntimeError, match="went away"):
        run_tenant(engine, tenant, RunOptions(batch_size=4, workers=2))
    monkeypatch.setattr(runner, "_batch_after", batch_after)
    statuses = sorted(p.status for p in range_rows(engine, tenant))
    (run,) = run_rows(engine, tenant)

    assert statuses == ["failed", "interrupted"], "the sibling stopped at its next batch"
    assert run.status == "failed"
    assert is_backfilled(engine, tenant) == (False, False)

    resumed = run_tenant(engine, tenant, RunOptions(batch_size=4, workers=2))

    assert (resumed.run_id, resumed.status) == (run.id, "done")
    assert resumed.products_scanned == len(products) - run.products_scanned
    for product_id in products:
        assert table_elements(engine, tenant, product_id) == expected_elements(
            engine, tenant, product_id
        )
