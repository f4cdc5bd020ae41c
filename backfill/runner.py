"""The backfill of one tenant: keyset batches under row locks, one transaction each, with the
checkpoint committed inside the batch, adaptive batch size, rate limit, pause and stop."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from app.core.database import quoted_schema, tenant_schema
from backfill import health, knobs
from backfill.health import HealthLimits
from backfill.knobs import Knobs
from backfill.projection import project_products, record_rejections
from backfill.tenants import is_contracted

log = structlog.get_logger("backfill")
# The run's clock (batch timing, the rate); tests replace it to drive time by hand.
monotonic = time.monotonic

LOCK_NOT_AVAILABLE = "55P03"


class TenantBusy(RuntimeError):
    """Another worker holds this tenant's backfill lock."""


class ProductsRefused(RuntimeError):
    """The table refused a batch's images (a data or integrity error, e.g. an image id that
    another product's row already has): the products are tried one by one."""


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
    max_rate: float | None = None  # images per second, over the whole run
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


class Controls(Protocol):
    """What a run consults between batches."""

    def should_stop(self) -> bool:
        """SIGINT/SIGTERM or job abort: finish the batch, then stop."""

    def is_paused(self) -> bool:
        """The pause toggle: wait between batches while on."""

    def sleep(self, seconds: float) -> None:
        """Wait (interruptible by a stop where possible)."""


class NoControls:
    """Never stops, never pauses."""

    def should_stop(self) -> bool:
        """Never."""
        return False

    def is_paused(self) -> bool:
        """Never."""
        return False

    def sleep(self, seconds: float) -> None:
        """time.sleep."""
        time.sleep(seconds)


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

    @property
    def rate(self) -> float:
        """Images inserted per second."""
        return self.images_inserted / self.seconds if self.seconds else 0.0


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
) -> TenantResult:
    """Migrate every product of the tenant that has no rows yet, resuming an unfinished run."""
    controls = controls or NoControls()
    schema = quoted_schema(tenant_schema(tenant_id))
    bound = structlog.get_logger("backfill").bind(tenant=tenant_id, stage="backfill")
    if is_contracted(engine, tenant_id):
        # products.images is gone: the table is the only representation, nothing to copy.
        bound.info("backfill.contracted_skip")
        return TenantResult(tenant_id, run_id=0, status="contracted")
    with engine.connect() as lock_connection:
        # Session-level advisory lock: one runner per tenant, whatever started it (CLI or job
        # worker), released by PostgreSQL if the process dies, even with kill -9.
        got = lock_connection.execute(
            text("SELECT pg_try_advisory_lock(hashtext(:key))"), {"key": f"backfill:{schema}"}
        ).scalar_one()
        lock_connection.commit()
        if not got:
            raise TenantBusy(f"tenant {tenant_id} is being backfilled by another worker")
        try:
            with engine.connect() as connection:
                # Named apart so that other backfills do not take it for live traffic
                # (_app_busy); reset before the pooled connection goes back.
                connection.execute(text(f"SET application_name = '{BACKFILL_APP_NAME}'"))
                connection.commit()
                try:
                    return _run(connection, tenant_id, schema, options, controls, progress, bound)
                finally:
                    if not connection.invalidated:
                        connection.rollback()
                        connection.execute(text("RESET application_name"))
                        connection.commit()
        finally:
            lock_connection.execute(
                text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": f"backfill:{schema}"}
            )
            lock_connection.commit()


def _run(
    connection: Connection,
    tenant_id: int,
    schema: str,
    options: RunOptions,
    controls: Controls,
    progress: Progress,
    log: structlog.stdlib.BoundLogger,
) -> TenantResult:
    started = monotonic()
    run_id, checkpoint = _start_or_resume(connection, schema, options)
    result = TenantResult(tenant_id=tenant_id, run_id=run_id, status="running")
    log = log.bind(run=run_id)
    log.info("backfill.run_started", checkpoint=checkpoint, dry_run=options.dry_run)
    size = options.batch_size or options.initial_batch_size
    server = health.sample(connection, schema, options.health)
    turned = Knobs()
    pace = _Pace(options.max_rate, started)
    try:
        while True:
            if _wait_while_paused(controls, log):
                return _finish(connection, schema, result, "interrupted", started, log)
            turned = _read_knobs(connection, tenant_id, turned, log)
            size = turned.batch_size or size
            pace.aim(turned.max_rate or options.max_rate, monotonic(), result.images_inserted)
            batch_started = monotonic()
            busy_before = _app_busy(connection)
            refused: str | None = None
            try:
                outcome = _batch_after(connection, schema, checkpoint, size, options, result)
            except ProductsRefused as exc:  # narrowed down to the one product, then deferred
                outcome, refused = None, str(exc)
            if outcome is None:  # lock timeout, or the table refused one of the products
                if refused is None:
                    result.lock_timeouts += 1
                if size > options.min_batch_size:
                    size = max(options.min_batch_size, size // 4)
                    log.warning("backfill.batch_shrink", batch_size=size, refused=refused)
                    continue
                checkpoint = _defer_next(
                    connection, schema, run_id, checkpoint, result, refused or "lock timeout"
                )
                log.warning("backfill.product_deferred", product=checkpoint, reason=refused)
                continue
            scanned, inserted, new_checkpoint = outcome
            if scanned == 0:
                break
            checkpoint = new_checkpoint
            progress(tenant_id, scanned, inserted)
            elapsed = monotonic() - batch_started
            size = next_batch_size(size, elapsed, options)
            if options.yield_ratio > 0 and (busy_before or _app_busy(connection)):
                result.yields += 1
                controls.sleep(elapsed * options.yield_ratio)
            server = _wait_for_health(connection, schema, options, controls, result, server, log)
            ahead = pace.wait(monotonic(), result.images_inserted)
            if ahead > 0:
                controls.sleep(ahead)
        _retry_deferred(connection, schema, options, controls, result, log)
        status = "done" if result.deferred == 0 else "interrupted"
        return _finish(connection, schema, result, status, started, log)
    except BaseException as exc:
        connection.rollback()
        _finish(connection, schema, result, "failed", started, log, error=repr(exc))
        raise


def _start_or_resume(connection: Connection, schema: str, options: RunOptions) -> tuple[int, int]:
    if options.dry_run:
        return 0, 0
    with connection.begin():
        row = connection.execute(
            text(
                f"SELECT id, checkpoint FROM {schema}.backfill_runs "
                "WHERE status IN ('running', 'interrupted') ORDER BY id DESC LIMIT 1"
            )
        ).first()
        if row is not None:
            connection.execute(
                text(
                    f"UPDATE {schema}.backfill_runs SET status = 'running', worker = :worker, "
                    "updated_at = now() WHERE id = :id"
                ),
                {"id": row.id, "worker": options.worker},
            )
            return int(row.id), int(row.checkpoint)
        run_id = connection.execute(
            text(
                f"INSERT INTO {schema}.backfill_runs (status, worker) "
                "VALUES ('running', :worker) RETURNING id"
            ),
            {"worker": options.worker},
        ).scalar_one()
        return int(run_id), 0


def _batch_after(
    connection: Connection,
    schema: str,
    checkpoint: int,
    size: int,
    options: RunOptions,
    result: TenantResult,
) -> tuple[int, int, int] | None:
    """One batch in one transaction; None when the batch's row locks timed out."""
    transaction = connection.begin()
    try:
        _prepare(connection, schema, options)
        ids = list(
            connection.execute(
                text(
                    f"SELECT id FROM {schema}.products WHERE id > :checkpoint "
                    "ORDER BY id LIMIT :size FOR UPDATE"
                ),
                {"checkpoint": checkpoint, "size": size},
            ).scalars()
        )
        if not ids:
            transaction.rollback()
            return 0, 0, checkpoint
        inserted, rejected = _migrate(connection, ids, options)
        new_checkpoint = ids[-1]
        _record_batch(connection, schema, result, ids, new_checkpoint, inserted, rejected, size)
        if options.dry_run:
            transaction.rollback()  # a dry run measures everything and keeps nothing
        else:
            transaction.commit()
    except DBAPIError as exc:
        transaction.rollback()
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return None
        if _is_refusal(exc):
            raise ProductsRefused(_first_line(exc)) from exc
        raise
    except BaseException:
        transaction.rollback()
        raise
    result.products_scanned += len(ids)
    result.images_inserted += inserted
    result.rejected += rejected
    result.batches += 1
    return len(ids), inserted, new_checkpoint


def _prepare(connection: Connection, schema: str, options: RunOptions) -> None:
    connection.execute(text(f"SET LOCAL lock_timeout = '{int(options.lock_timeout_ms)}ms'"))
    # The projection SQL names tenant tables unqualified; this transaction reads this schema.
    connection.execute(text(f"SET LOCAL search_path TO {schema}, public"))
    connection.execute(text("SET CONSTRAINTS ALL DEFERRED"))


def _is_refusal(exc: DBAPIError) -> bool:
    """A data exception (class 22) or an integrity violation (class 23): what this product's
    JSONB asks of the table cannot be stored; retrying the same batch cannot help."""
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return sqlstate[:2] in ("22", "23")


def _first_line(exc: DBAPIError) -> str:
    return (str(exc.orig) if exc.orig is not None else str(exc)).splitlines()[0]


def _migrate(connection: Connection, ids: Sequence[int], options: RunOptions) -> tuple[int, int]:
    inserted = project_products(connection, ids, options.legacy_sources)
    rejected = record_rejections(connection, ids, "backfill")
    return inserted, rejected


def _record_batch(
    connection: Connection,
    schema: str,
    result: TenantResult,
    ids: Sequence[int],
    checkpoint: int,
    inserted: int,
    rejected: int,
    size: int,
) -> None:
    # Committed with the batch's rows: after a crash, the checkpoint never runs ahead of them.
    connection.execute(
        text(
            f"UPDATE {schema}.backfill_runs SET checkpoint = :checkpoint, "
            "products_scanned = products_scanned + :scanned, "
            "images_inserted = images_inserted + :inserted, rejected = rejected + :rejected, "
            "batches = batches + 1, batch_size = :size, lock_timeouts = :lock_timeouts, "
            "updated_at = now() WHERE id = :id"
        ),
        {
            "checkpoint": checkpoint,
            "scanned": len(ids),
            "inserted": inserted,
            "rejected": rejected,
            "size": size,
            "lock_timeouts": result.lock_timeouts,
            "id": result.run_id,
        },
    )
    connection.execute(
        text(f"DELETE FROM {schema}.backfill_deferred WHERE product_id = ANY(:ids)"),
        {"ids": list(ids)},
    )


def _defer_next(
    connection: Connection,
    schema: str,
    run_id: int,
    checkpoint: int,
    result: TenantResult,
    reason: str,
) -> int:
    """A single product that stays locked (or that the table refuses): note it, with why,
    for a later retry and move past it."""
    with connection.begin():
        product_id = connection.execute(
            text(f"SELECT min(id) FROM {schema}.products WHERE id > :checkpoint"),
            {"checkpoint": checkpoint},
        ).scalar_one()
        if product_id is None:
            return checkpoint
        connection.execute(
            text(
                f"INSERT INTO {schema}.backfill_deferred (product_id, reason) "
                "VALUES (:id, :reason) ON CONFLICT (product_id) "
                "DO UPDATE SET attempts = backfill_deferred.attempts + 1, deferred_at = now(), "
                "reason = EXCLUDED.reason"
            ),
            {"id": product_id, "reason": reason},
        )
        connection.execute(
            text(
                f"UPDATE {schema}.backfill_runs SET checkpoint = :checkpoint, "
                "deferred = deferred + 1, updated_at = now() WHERE id = :run"
            ),
            {"checkpoint": product_id, "run": run_id},
        )
    return int(product_id)


def _retry_deferred(
    connection: Connection,
    schema: str,
    options: RunOptions,
    controls: Controls,
    result: TenantResult,
    log: structlog.stdlib.BoundLogger,
) -> None:
    """Come back for products that were locked, with backoff; never skip one for good."""
    delay = 0.2
    for _round in range(options.deferred_rounds):
        with connection.begin():
            pending = list(
                connection.execute(
                    text(f"SELECT product_id FROM {schema}.backfill_deferred ORDER BY product_id")
                ).scalars()
            )
        if not pending or controls.should_stop():
            break
        for product_id in pending:
            _batch_for(connection, schema, product_id, options, result)
        controls.sleep(delay)
        delay *= 2
    with connection.begin():
        result.deferred = int(
            connection.execute(
                text(f"SELECT count(*) FROM {schema}.backfill_deferred")
            ).scalar_one()
        )
    if result.deferred:
        log.warning("backfill.still_deferred", products=result.deferred)


def _batch_for(
    connection: Connection, schema: str, product_id: int, options: RunOptions, result: TenantResult
) -> None:
    transaction = connection.begin()
    try:
        _prepare(connection, schema, options)
        locked = connection.execute(
            text(f"SELECT id FROM {schema}.products WHERE id = :id FOR UPDATE"), {"id": product_id}
        ).scalar()
        inserted, rejected = _migrate(connection, [product_id], options) if locked else (0, 0)
        connection.execute(
            text(f"DELETE FROM {schema}.backfill_deferred WHERE product_id = :id"),
            {"id": product_id},
        )
        transaction.commit()
    except DBAPIError as exc:
        transaction.rollback()
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            result.lock_timeouts += 1
            return
        if _is_refusal(exc):  # stays deferred, with the table's reason, for the operator
            with connection.begin():
                connection.execute(
                    text(
                        f"UPDATE {schema}.backfill_deferred SET reason = :reason, "
                        "attempts = attempts + 1, deferred_at = now() WHERE product_id = :id"
                    ),
                    {"reason": _first_line(exc), "id": product_id},
                )
            return
        raise
    result.images_inserted += inserted
    result.rejected += rejected


def _wait_while_paused(controls: Controls, log: structlog.stdlib.BoundLogger) -> bool:
    """Block while paused; True when a stop was asked for instead."""
    announced = False
    while True:
        if controls.should_stop():
            return True
        if not controls.is_paused():
            if announced:
                log.info("backfill.resumed")
            return False
        if not announced:
            log.info("backfill.paused")
            announced = True
        controls.sleep(1.0)


def _wait_for_health(
    connection: Connection,
    schema: str,
    options: RunOptions,
    controls: Controls,
    result: TenantResult,
    previous: health.HealthSample,
    log: structlog.stdlib.BoundLogger,
) -> health.HealthSample:
    """Wait, a second at a time, while the database is under pressure; the last sample."""
    current = health.sample(connection, schema, options.health)
    reason = health.pressure(previous, current, options.health)
    while reason is not None and not controls.should_stop():
        result.throttles += 1
        log.info("backfill.throttled", reason=reason)
        controls.sleep(1.0)
        previous, current = current, health.sample(connection, schema, options.health)
        reason = health.pressure(previous, current, options.health)
    return current


APP_NAME = "product-images"  # app.core.database.make_engine's application_name
BACKFILL_APP_NAME = "product-images-backfill"


def _app_busy(connection: Connection) -> bool:
    """Whether another of the app's sessions is working in this database right now (not
    idle; backfill sessions are named apart and do not count)."""
    busy = connection.execute(
        text(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND application_name = :app "
            "AND state IN ('active', 'idle in transaction'))"
        ),
        {"app": APP_NAME},
    ).scalar()
    connection.commit()
    return bool(busy)


@dataclass
class _Pace:
    """The rate a run keeps (`--max-rate`, or its knob), counted from when it was set."""

    rate: float | None
    since: float
    inserted_then: int = 0

    def aim(self, rate: float | None, now: float, inserted: int) -> None:
        """Keep `rate` from now on (a change restarts the count: no burst, no long sleep)."""
        if rate != self.rate:
            self.rate, self.since, self.inserted_then = rate, now, inserted

    def wait(self, now: float, inserted: int) -> float:
        """Seconds to sleep to stay within the rate. A run behind its rate (a pause, a
        throttle, a yield, a slow batch) earns no credit: the count starts again from now,
        so a rate is a ceiling at every moment, never an average to catch up on."""
        if not self.rate:
            return 0.0
        ahead = (inserted - self.inserted_then) / self.rate - (now - self.since)
        if ahead <= 0:
            self.since, self.inserted_then = now, inserted
        return max(ahead, 0.0)


def _read_knobs(
    connection: Connection, tenant_id: int, before: Knobs, log: structlog.stdlib.BoundLogger
) -> Knobs:
    """The knobs in force now (`backfill tune`), logged when they changed."""
    now = knobs.in_force(connection, tenant_id)
    connection.commit()
    if now != before:
        log.info("backfill.knobs_changed", max_rate=now.max_rate, batch_size=now.batch_size)
    return now


def _finish(
    connection: Connection,
    schema: str,
    result: TenantResult,
    status: str,
    started: float,
    log: structlog.stdlib.BoundLogger,
    *,
    error: str | None = None,
) -> TenantResult:
    result.status = status
    result.seconds = monotonic() - started
    if result.run_id:
        with connection.begin():
            connection.execute(
                text(
                    f"UPDATE {schema}.backfill_runs SET status = :status, error = :error, "
                    "lock_timeouts = :lock_timeouts, updated_at = now(), "
                    "finished_at = CASE WHEN :status IN ('done', 'failed') THEN now() END "
                    "WHERE id = :id"
                ),
                {
                    "status": status,
                    "error": error,
                    "lock_timeouts": result.lock_timeouts,
                    "id": result.run_id,
                },
            )
    log.info(
        "backfill.run_finished",
        status=status,
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
