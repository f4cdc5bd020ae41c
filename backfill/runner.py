"""The backfill of one tenant: keyset batches under row locks, one transaction each, with the
checkpoint committed inside the batch, adaptive batch size, rate limit, pause and stop; the
tenant's product ids split into key ranges (app/repositories/migration_state/runs.py), one
worker per range.

Over 300 lines because a run's phases (plan, workers, a range's batch loop, its end and
roll-up) share one worker's stop, pause and failure handling; the batch itself is
batches.py, the pacing pacing.py."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import structlog
from sqlalchemy import Connection, Engine, text

from app.core.database import quoted_schema, tenant_schema
from app.repositories.migration_state import claims, runs
from app.repositories.migration_state.runs import RangeRef
from backfill import health
from backfill.batches import ProductsRefused, defer_next, retry_deferred
from backfill.batches import batch_after as _batch_after  # tests wrap it here
from backfill.health import HealthLimits
from backfill.knobs import Knobs
from backfill.pacing import (
    BACKFILL_APP_NAME,
    Controls,
    NoControls,
    Pace,
    app_busy,
    rate_share,
    read_knobs,
    wait_for_health,
    wait_while_paused,
)
from backfill.tenants import is_contracted

log = structlog.get_logger("backfill")
# The run's clock (batch timing, the rate); tests replace it to drive time by hand.
monotonic = time.monotonic


class TenantBusy(RuntimeError):
    """Other workers hold every unfinished range of this tenant's run (or an older runner
    holds the whole tenant)."""


class TenantNotExpanded(RuntimeError):
    """The tenant's schema lacks the product_images/backfill tables: migrate it first."""


@dataclass(frozen=True)
class RunOptions:
    """How a run behaves; the defaults are fast on an idle database and gentle on a busy one."""

    legacy_sources: tuple[str, ...] = ("pythonApiWOO",)
    batch_size: int | None = None  # fixed size; None = adapt to target_batch_seconds
    initial_batch_size: int = 500
    min_batch_size: int = 1
    max_batch_size: int = 5000
    target_batch_seconds: float = 0.5
    max_rate: float | None = None  # images per second, over the whole run (all its workers)
    # Yield to live traffic (gh-ost's max-load idea): when the app's sessions are busy in the
    # database (sampled before and after each batch), sleep `yield_ratio` x the batch's time
    # after it. An idle database never waits; other backfills do not count as traffic.
    yield_ratio: float = 1.0
    # And to the database's own health (backfill/health.py): standby lag, a long autovacuum
    # on the tenant's tables, a forced checkpoint.
    health: HealthLimits = field(default_factory=HealthLimits)
    lock_timeout_ms: int = 200
    deferred_rounds: int = 5
    dry_run: bool = False
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:cli")
    # A new run is split into this many key ranges and worked by as many threads; a resumed
    # run keeps the ranges it has (docs/benchmarks.md, "Parallel workers": 2 on 2 cores).
    workers: int = 1


@dataclass
class TenantResult:
    """What one run did for one tenant."""

    tenant_id: int
    run_id: int
    status: str
    products_scanned: int = 0
    images_inserted: int = 0
    rejected: int = 0
    deferred: int = 0
    batches: int = 0
    lock_timeouts: int = 0
    yields: int = 0  # batches followed by a pause for live traffic
    throttles: int = 0  # waits for the database's health (backfill/health.py)
    seconds: float = 0.0
    ranges: dict[int, str] = field(default_factory=dict)  # range worked -> its status

    @property
    def rate(self) -> float:
        """Images inserted per second."""
        return self.images_inserted / self.seconds if self.seconds else 0.0

    def add(self, other: TenantResult) -> None:
        """Count in what another range or worker of the same run did."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.ranges.update(other.ranges)


_COUNTS = (
    "products_scanned",
    "images_inserted",
    "rejected",
    "deferred",
    "batches",
    "lock_timeouts",
    "yields",
    "throttles",
)


Progress = Callable[[int, int, int], None]  # (tenant_id, products, images) since last call


def _noop_progress(tenant_id: int, products: int, images: int) -> None:
    return None


def next_batch_size(current: int, elapsed: float, options: RunOptions) -> int:
    """Steer the batch toward the time budget: at most double, at least quarter, per step."""
    if options.batch_size is not None:
        return options.batch_size
    if elapsed <= 0:
        return min(options.max_batch_size, current * 2)
    wanted = current * options.target_batch_seconds / elapsed
    bounded = max(current / 4, min(current * 2, wanted))
    return int(max(options.min_batch_size, min(options.max_batch_size, bounded)))


def run_tenant(
    engine: Engine,
    tenant_id: int,
    options: RunOptions,
    *,
    controls: Controls | None = None,
    progress: Progress = _noop_progress,
    only: RangeRef | None = None,
) -> TenantResult:
    """Migrate every product of the tenant that has no rows yet, resuming an unfinished run.

    A new run is split into `options.workers` key ranges (migration_state.runs), worked by as
    many threads at once, each on its own connection; a resumed run keeps its ranges. With
    `only`, this call works that one range of that run (a job per range) and nothing else."""
    controls = controls or NoControls()
    schema = quoted_schema(tenant_schema(tenant_id))
    bound = structlog.get_logger("backfill").bind(tenant=tenant_id, stage="backfill")
    if is_contracted(engine, tenant_id):
        # products.images is gone: the table is the only representation, nothing to copy.
        bound.info("backfill.contracted_skip")
        return TenantResult(tenant_id, run_id=0, status="contracted")
    started = monotonic()
    plan: runs.Plan | None
    with engine.connect() as connection:
        if only is None:
            plan = runs.start_or_resume(
                connection,
                schema,
                parts=options.workers,
                worker=options.worker,
                dry_run=options.dry_run,
            )
        else:
            plan = runs.load(connection, schema, only.run_id)
    if plan is None:  # the job's run is gone (its tenant was reset): nothing of it is left
        return TenantResult(tenant_id, run_id=0, status="done")
    bound = bound.bind(run=plan.run_id)
    work = _Work(engine, tenant_id, schema, plan, options, controls, progress, bound, set())
    workers = 1 if only is not None else max(1, min(options.workers, len(plan.unfinished)))
    if workers == 1:
        result = _worker(work, None if only is None else only.range_no)
    else:
        result = _in_parallel(work, workers)
    result.seconds = monotonic() - started
    bound.info(
        "backfill.run_finished",
        status=result.status,
        ranges=result.ranges,
        workers=workers,
        products=result.products_scanned,
        images=result.images_inserted,
        rejected=result.rejected,
        deferred=result.deferred,
        yields=result.yields,
        throttles=result.throttles,
        seconds=round(result.seconds, 3),
        rate=round(result.rate, 1),
    )
    return result


@dataclass(frozen=True)
class _Work:
    """What the workers of one run_tenant call share."""

    engine: Engine
    tenant_id: int
    schema: str
    plan: runs.Plan
    options: RunOptions
    controls: Controls
    progress: Progress
    log: structlog.stdlib.BoundLogger
    worked: set[int]  # the ranges taken by this call's workers, not to be taken again


class _StopAll:
    """The run's controls, plus a stop that one failed worker sets for its siblings."""

    def __init__(self, controls: Controls) -> None:
        self.controls = controls
        self.failed = threading.Event()

    def should_stop(self) -> bool:
        return self.failed.is_set() or self.controls.should_stop()

    def is_paused(self) -> bool:
        return self.controls.is_paused()

    def sleep(self, seconds: float) -> None:
        self.controls.sleep(seconds)


def _in_parallel(work: _Work, workers: int) -> TenantResult:
    """`workers` threads, each taking free ranges until none is left. Threads, not processes:
    a worker's work is its PostgreSQL backend's (the projection runs there, one backend per
    connection, so two workers use two cores); its Python side mostly waits on the socket,
    without the GIL, and shares the process's pool, signal handling, pause toggle and
    progress bar (docs/benchmarks.md, "Parallel workers")."""
    shared = _StopAll(work.controls)
    sharing = replace(work, controls=shared)
    results: list[TenantResult] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def one_worker() -> None:
        try:
            done = _worker(sharing, None)
        except TenantBusy:
            return  # fewer free ranges than workers: the others have them
        except BaseException as exc:
            shared.failed.set()  # one failure stops the run; a rerun resumes every range
            with guard:
                errors.append(exc)
            return
        with guard:
            results.append(done)

    threads = [
        threading.Thread(target=one_worker, name=f"backfill-{work.tenant_id}-{n}")
        for n in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    if not results:
        raise TenantBusy(
            f"tenant {work.tenant_id}: every unfinished range is held by another worker"
        )
    total = TenantResult(work.tenant_id, run_id=work.plan.run_id, status="running")
    for done in results:
        total.add(done)
    with work.engine.connect() as connection:
        total.status = _run_status(connection, work, results)
    return total


def _run_status(connection: Connection, work: _Work, results: Sequence[TenantResult]) -> str:
    """The run's status as its ranges left it (a dry run: from what its workers did)."""
    if work.plan.run_id == 0:
        return runs.run_status([s for r in results for s in r.ranges.values()])
    with connection.begin():
        return runs.status_of_run(connection, work.schema, work.plan.run_id)


def _worker(work: _Work, only: int | None) -> TenantResult:
    """One worker on its own connection: takes a free range (or range `only`), works it to
    its end, then the next, until none is free; TenantBusy if it found none free at all."""
    result = TenantResult(work.tenant_id, run_id=work.plan.run_id, status="running")
    key = claims.tenant_lock_key(work.schema)
    with work.engine.connect() as connection:
        # Named apart first, so that no other backfill (a sibling worker included) takes
        # this session for live traffic (pacing.app_busy); reset before it goes back to the
        # pool.
        connection.execute(text(f"SET application_name = '{BACKFILL_APP_NAME}'"))
        connection.commit()
        try:
            # Session-level advisory locks (the tenant's, shared by its workers; each
            # range's, by its one worker), released by PostgreSQL if the process dies, even
            # with kill -9.
            got = connection.execute(
                text("SELECT pg_try_advisory_lock_shared(hashtext(:key))"), {"key": key}
            ).scalar_one()
            connection.commit()
            if not got:
                raise TenantBusy(f"tenant {work.tenant_id} is being backfilled by another runner")
            try:
                _take_ranges(connection, work, only, result)
            finally:
                if not connection.invalidated:
                    connection.rollback()
                    connection.execute(
                        text("SELECT pg_advisory_unlock_shared(hashtext(:key))"), {"key": key}
                    )
                    connection.commit()
            result.status = _run_status(connection, work, [result])
        finally:
            if not connection.invalidated:
                connection.rollback()
                connection.execute(text("RESET application_name"))
                connection.commit()
    return result


def _take_ranges(
    connection: Connection, work: _Work, only: int | None, result: TenantResult
) -> None:
    held_elsewhere = False
    while True:
        part, held = claims.claim(
            connection,
            work.schema,
            work.plan,
            worker=work.options.worker,
            only=only,
            skip=work.worked,
        )
        held_elsewhere = held_elsewhere or held
        if part is None:
            break
        work.worked.add(part.range_no)
        try:
            done = _run_range(connection, work, part)
        finally:
            if not connection.invalidated:
                connection.rollback()
                claims.release(connection, work.schema, part)
        result.add(done)
        # Stopped, or deferred products left: no further range. (Checked here between
        # ranges; a range checks it before each of its batches.)
        if done.status != "done" or work.controls.should_stop():
            break
    if not result.ranges and held_elsewhere:
        raise TenantBusy(
            f"tenant {work.tenant_id}: its unfinished ranges are held by other workers"
        )


def _run_range(connection: Connection, work: _Work, part: runs.KeyRange) -> TenantResult:
    """One range, keyset batch after keyset batch, then its deferred products; the result's
    status is the range's (done, interrupted or failed), rolled up into its run."""
    tenant_id, schema, options, controls = work.tenant_id, work.schema, work.options, work.controls
    started = monotonic()
    checkpoint = part.checkpoint
    result = TenantResult(tenant_id=tenant_id, run_id=part.run_id, status="running")
    log = work.log.bind(range=part.range_no)
    log.info(
        "backfill.range_started",
        lower=part.lower,
        upper=part.upper,
        checkpoint=checkpoint,
        dry_run=options.dry_run,
    )
    size = options.batch_size or options.initial_batch_size
    server = health.sample(connection, schema, options.health)
    turned = Knobs()
    pace = Pace(options.max_rate, started)
    rolled_up_at = started
    try:
        while True:
            if wait_while_paused(controls, log):
                return _finish(connection, schema, part, result, "interrupted", started, log)
            turned = read_knobs(connection, tenant_id, turned, log)
            size = turned.batch_size or size
            rate = rate_share(connection, schema, turned.max_rate or options.max_rate)
            pace.aim(rate, monotonic(), result.images_inserted)
            batch_started = monotonic()
            busy_before = app_busy(connection)
            refused: str | None = None
            try:
                outcome = _batch_after(connection, schema, part, checkpoint, size, options, result)
            except ProductsRefused as exc:  # narrowed down to the one product, then deferred
                outcome, refused = None, str(exc)
            if outcome is None:  # lock timeout, or the table refused one of the products
                if refused is None:
                    result.lock_timeouts += 1
                if size > options.min_batch_size:
                    size = max(options.min_batch_size, size // 4)
                    log.warning("backfill.batch_shrink", batch_size=size, refused=refused)
                    continue
                checkpoint = defer_next(
                    connection, schema, part, checkpoint, result, refused or "lock timeout"
                )
                log.warning("backfill.product_deferred", product=checkpoint, reason=refused)
                continue
            scanned, inserted, new_checkpoint = outcome
            if scanned == 0:
                break
            checkpoint = new_checkpoint
            work.progress(tenant_id, scanned, inserted)
            if part.run_id and monotonic() - rolled_up_at >= ROLL_UP_SECONDS:
                _roll_up(connection, schema, part.run_id)
                rolled_up_at = monotonic()
            elapsed = monotonic() - batch_started
            size = next_batch_size(size, elapsed, options)
            if options.yield_ratio > 0 and (busy_before or app_busy(connection)):
                result.yields += 1
                controls.sleep(elapsed * options.yield_ratio)
            server, throttles = wait_for_health(
                connection, schema, options.health, controls, server, log
            )
            result.throttles += throttles
            ahead = pace.wait(monotonic(), result.images_inserted)
            if ahead > 0:
                controls.sleep(ahead)
        retry_deferred(connection, schema, part, options, controls, result, log)
        status = "done" if result.deferred == 0 else "interrupted"
        return _finish(connection, schema, part, result, status, started, log)
    except BaseException as exc:
        connection.rollback()
        _finish(connection, schema, part, result, "failed", started, log, error=repr(exc))
        raise


# The run row's figures (status, progress, rate) follow its ranges' at most this late.
ROLL_UP_SECONDS = 1.0


def _roll_up(connection: Connection, schema: str, run_id: int) -> None:
    with connection.begin():
        runs.roll_up(connection, schema, run_id)


def _finish(
    connection: Connection,
    schema: str,
    part: runs.KeyRange,
    result: TenantResult,
    status: str,
    started: float,
    log: structlog.stdlib.BoundLogger,
    *,
    error: str | None = None,
) -> TenantResult:
    """The range ends (done, interrupted or failed) and is rolled up into its run."""
    result.status = status
    result.ranges[part.range_no] = status
    result.seconds = monotonic() - started
    if part.run_id:
        with connection.begin():
            runs.finish_range(
                connection,
                schema,
                part,
                status=status,
                error=error,
                lock_timeouts=result.lock_timeouts,
            )
    log.info(
        "backfill.range_finished",
        status=status,
        products=result.products_scanned,
        images=result.images_inserted,
        rejected=result.rejected,
        deferred=result.deferred,
        seconds=round(result.seconds, 3),
        rate=round(result.rate, 1),
    )
    return result
