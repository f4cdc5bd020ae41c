"""Tenant jobs on procrastinate (a PostgreSQL job queue in the same database): backfill,
enrich, verify, audit, canonicalize, contract and uncontract, one job per tenant and kind, each
with its run row (backfill/job_runs.py: progress, pause, resume, cancel); any number of
workers on any number of machines, stalled jobs taken over."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import lru_cache
from typing import Any, Literal

import structlog
from procrastinate import App, JobContext, PsycopgConnector, RetryStrategy
from procrastinate.exceptions import AlreadyEnqueued, UniqueViolation
from procrastinate.jobs import Status
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from app.composition import Services, build
from app.core import migrate
from app.core.database import make_engine, quoted_schema, resolve_database_url, tenant_schema
from app.core.settings import get_settings
from backfill import job_runs, ranges
from backfill.audit import TenantAudit, audit_tenant
from backfill.contract import ContractRefused, canonicalize_tenant
from backfill.controls import PauseToggle, RunRequests
from backfill.job_runs import RunCancelled
from backfill.ranges import RangeRef
from backfill.runner import RunOptions, TenantBusy, run_tenant
from backfill.tenants import is_contracted, is_ready
from backfill.verify import TenantContracted, verify_tenant

log = structlog.get_logger("backfill.jobs")

BACKFILL_QUEUE = "backfill"
MAINTENANCE_QUEUE = "maintenance"
STALLED_AFTER_SECONDS = 30


def libpq_url(sqlalchemy_url: str) -> str:
    """A SQLAlchemy psycopg URL as a plain libpq URI."""
    return (
        make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


def build_app(database_url: str | None = None) -> App:
    """The procrastinate app; its tables live in the `procrastinate` schema."""
    url = database_url or resolve_database_url(get_settings())
    connector = PsycopgConnector(
        conninfo=libpq_url(url), kwargs={"options": "-c search_path=procrastinate"}
    )
    return App(connector=connector)


@lru_cache(maxsize=1)
def queue_app() -> App:
    """The process's procrastinate app, with the tasks registered (built on first use)."""
    procrastinate_app = build_app()
    register_tasks(procrastinate_app)
    return procrastinate_app


@lru_cache(maxsize=1)
def _services() -> Services:
    """The worker process's services (app/composition.py), built on first use."""
    return build(get_settings(), _engine())


def _pause() -> PauseToggle:
    return PauseToggle(_services().flags)


@lru_cache(maxsize=1)
def _engine() -> Engine:
    return make_engine(resolve_database_url(get_settings()), pool_size=4)


class JobControls:
    """A job stops between batches when asked to abort or when its run is cancelled; pauses
    with the backfill-pause toggle or its own run's pause (backfill/controls.py)."""

    def __init__(self, context: JobContext, requests: RunRequests | None = None) -> None:
        self.context = context
        self.requests = requests

    def should_stop(self) -> bool:
        """The job was asked to abort, its run was cancelled, or the worker is stopping."""
        if self.requests is not None and self.requests.is_cancelled():
            return True
        return bool(self.context.should_abort())

    def is_paused(self) -> bool:
        """The backfill-pause toggle (one flags client per worker process), or the run's own
        pause."""
        own = self.requests is not None and self.requests.is_paused()
        return own or _pause().is_paused()

    def sleep(self, seconds: float) -> None:
        """Plain sleep (jobs run in worker threads)."""
        time.sleep(seconds)


class Tracker:
    """A job's run row: progress written at most once a second, the operator's request read
    with it; a cancel raises RunCancelled from `advance` (for passes with no controls)."""

    def __init__(self, engine: Engine, run_id: int, context: JobContext) -> None:
        self.engine = engine
        self.run_id = run_id
        self.requests = RunRequests(engine, run_id)
        self.controls = JobControls(context, self.requests)
        self.done = 0
        self.total: int | None = None
        self._written_at: float | None = None

    def set_total(self, total: int) -> None:
        self.total = total
        self.requests.seen(job_runs.report(self.engine, self.run_id, done=self.done, total=total))

    def advance(self, units: int) -> None:
        self.done += units
        now = time.monotonic()
        if self._written_at is None or now - self._written_at >= 1.0:
            self._written_at = now
            self.requests.seen(job_runs.report(self.engine, self.run_id, done=self.done))
        if self.requests.is_cancelled():
            raise RunCancelled(f"run {self.run_id} cancelled")


Work = Callable[[Tracker], dict[str, Any]]


def tracked(
    context: JobContext, run_id: int | None, kind: job_runs.Kind, tenant_id: int, work: Work
) -> dict[str, Any]:
    """Run a job's work under its run row: started, progress, then done, refused (a guard
    said no, with its reason: not retried), cancelled, or failed (raised again: retried)."""
    from migrations.tenancy import TenantMigrationFailed

    engine = _engine()
    if run_id is None:  # deferred before runs were recorded, or by hand
        with engine.begin() as connection:
            run_id = job_runs.create(connection, tenant_id, kind, "unknown")
    run = job_runs.start(engine, run_id)
    if run is None or run.state == "cancelled":
        log.info("job.cancelled_before_start", run=run_id, kind=kind, tenant=tenant_id)
        return {"cancelled": True}
    tracker = Tracker(engine, run_id, context)
    bound = log.bind(run=run_id, kind=kind, tenant=tenant_id)
    try:
        result = work(tracker)
    except RunCancelled:
        job_runs.finish(engine, run_id, "cancelled", done=tracker.done)
        bound.info("job.cancelled")
        return {"cancelled": True}
    except (TenantContracted, ContractRefused, TenantMigrationFailed, NotReady) as exc:
        job_runs.finish(engine, run_id, "refused", error=str(exc), done=tracker.done)
        bound.warning("job.refused", reason=str(exc))
        return {"refused": str(exc)}
    except Exception as exc:
        job_runs.finish(engine, run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        bound.error("job.failed", error=repr(exc))
        raise
    state: Literal["done", "cancelled"] = (
        "cancelled" if tracker.requests.requested() == "cancel" else "done"
    )
    job_runs.finish(engine, run_id, state, result=result, done=tracker.done)
    bound.info("job.finished", state=state)
    return result


class NotReady(RuntimeError):
    """The tenant's schema is not migrated to head (or has no images to work on)."""


def _count(engine: Engine, tenant_id: int, *, without_rows: bool = False) -> int:
    """The tenant's products (those with no table row yet: what a backfill has left)."""
    schema = quoted_schema(tenant_schema(tenant_id))
    where = (
        f"WHERE NOT EXISTS (SELECT 1 FROM {schema}.product_images AS i WHERE i.product_id = p.id)"
        if without_rows
        else ""
    )
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(f"SELECT count(*) FROM {schema}.products AS p {where}")
            ).scalar_one()
        )


def _range_left(engine: Engine, tenant_id: int, part: RangeRef) -> int:
    """Products of a run's range that it has yet to migrate (0 once the range is done)."""
    schema = quoted_schema(tenant_schema(tenant_id))
    with engine.connect() as connection:
        plan = ranges.load(connection, schema, part.run_id)
        found = [r for r in plan.ranges if r.range_no == part.range_no] if plan else []
        if not found or found[0].is_done:
            return 0
        return ranges.products_left(connection, schema, found[0])


def _audit_summary(audit: TenantAudit) -> dict[str, Any]:
    return {
        "products": audit.products,
        "labelled_products": audit.labelled_products,
        "read_paths": dict(audit.read_paths),
        "leaking": audit.leaking,
        "refused": audit.refused,
        "marketplaces": {
            name: {
                "leaking": m.leaking,
                "unpublishable": m.unpublishable,
                "refused": m.refused,
                "refusal_reasons": dict(m.refusal_reasons),
                "leaking_sample": m.leaking_sample,
                "refused_sample": m.refused_sample,
            }
            for name, m in audit.marketplaces.items()
        },
    }


def register_tasks(procrastinate_app: App) -> None:
    """Register the tenant tasks (backfill, enrich, verify, audit, canonicalize, contract,
    uncontract) and the stalled-job sweeper on an app."""

    @procrastinate_app.task(
        name="backfill_tenant",
        queue=BACKFILL_QUEUE,
        pass_context=True,
        retry=RetryStrategy(max_attempts=10, wait=5, exponential_wait=2),
    )
    def backfill_tenant(
        context: JobContext,
        tenant_id: int,
        batch_size: int | None = None,
        max_rate: float | None = None,
        dry_run: bool = False,
        run_id: int | None = None,
    ) -> dict[str, Any]:
        options = _job_options(batch_size, max_rate, dry_run)

        def work(tracker: Tracker) -> dict[str, Any]:
            contracted = is_contracted(_engine(), tenant_id)
            tracker.set_total(0 if contracted else _count(_engine(), tenant_id, without_rows=True))
            return _backfill(tracker, tenant_id, options)

        return tracked(context, run_id, "backfill", tenant_id, work)

    @procrastinate_app.task(
        name="backfill_range",
        queue=BACKFILL_QUEUE,
        pass_context=True,
        retry=RetryStrategy(max_attempts=10, wait=5, exponential_wait=2),
    )
    def backfill_range(
        context: JobContext,
        tenant_id: int,
        backfill_run: int,
        range_no: int,
        batch_size: int | None = None,
        max_rate: float | None = None,
        run_id: int | None = None,
    ) -> dict[str, Any]:
        """One key range of a tenant's run (enqueue_backfill_ranges): its own worker, its own
        pause, cancel and progress; the run is done when its last range is."""
        options = _job_options(batch_size, max_rate)
        part = RangeRef(backfill_run, range_no)

        def work(tracker: Tracker) -> dict[str, Any]:
            tracker.set_total(_range_left(_engine(), tenant_id, part))
            return _backfill(tracker, tenant_id, options, part)

        return tracked(context, run_id, "backfill", tenant_id, work)

    @procrastinate_app.task(
        name="enrich_tenant",
        queue=BACKFILL_QUEUE,
        pass_context=True,
        retry=RetryStrategy(max_attempts=5, wait=5, exponential_wait=2),
    )
    def enrich_tenant(
        context: JobContext,
        tenant_id: int,
        max_rate: float | None = None,
        retry_failed: bool = False,
        run_id: int | None = None,
    ) -> dict[str, Any]:
        from backfill.enrich import EnrichOptions, enrich_tenants, is_ready, pending_count

        def work(tracker: Tracker) -> dict[str, Any]:
            if not is_ready(_engine(), tenant_id):
                raise NotReady(f"tenant {tenant_id}: not migrated to head, nothing to enrich")
            tracker.set_total(pending_count(_engine(), tenant_id, retry_failed=retry_failed))
            (result,) = enrich_tenants(
                _engine(),
                _services().images,  # with the worker's flags: the kill switch holds in jobs too
                [tenant_id],
                EnrichOptions(max_rate=max_rate, retry_failed=retry_failed),
                controls=tracker.controls,
                progress=lambda _t, images: _advance_quietly(tracker, images),
            )
            summary = asdict(result)
            summary["reasons"] = dict(result.reasons)
            return summary

        return tracked(context, run_id, "enrich", tenant_id, work)

    @procrastinate_app.task(name="verify_tenant", queue=BACKFILL_QUEUE, pass_context=True)
    def verify_tenant_job(
        context: JobContext, tenant_id: int, run_id: int | None = None
    ) -> dict[str, Any]:
        def work(tracker: Tracker) -> dict[str, Any]:
            if is_contracted(_engine(), tenant_id):
                raise TenantContracted(
                    f"tenant {tenant_id} is contracted: products.images is gone, nothing to compare"
                )
            tracker.set_total(_count(_engine(), tenant_id))
            report = verify_tenant(_engine(), tenant_id, progress=tracker.advance)
            return report.summary()

        return tracked(context, run_id, "verify", tenant_id, work)

    @procrastinate_app.task(name="audit_tenant", queue=BACKFILL_QUEUE, pass_context=True)
    def audit_tenant_job(
        context: JobContext, tenant_id: int, run_id: int | None = None
    ) -> dict[str, Any]:
        def work(tracker: Tracker) -> dict[str, Any]:
            tracker.set_total(_count(_engine(), tenant_id))
            services = _services()
            reload = getattr(services.flags, "reload", None)
            if reload is not None:  # a local toggle file: the stage as it is now, not 1 s ago
                reload()
            audit = audit_tenant(
                _engine(), tenant_id, services.images, services.converters, tracker.advance
            )
            return _audit_summary(audit)

        return tracked(context, run_id, "audit", tenant_id, work)

    @procrastinate_app.task(name="canonicalize_tenant", queue=BACKFILL_QUEUE, pass_context=True)
    def canonicalize_tenant_job(
        context: JobContext, tenant_id: int, run_id: int | None = None
    ) -> dict[str, Any]:
        def work(tracker: Tracker) -> dict[str, Any]:
            tracker.set_total(_count(_engine(), tenant_id))
            result = canonicalize_tenant(_engine(), tenant_id)
            tracker.done = tracker.total or 0
            return {
                "rewritten": result.rewritten,
                "backup": result.backup.id if result.backup else None,
                "seconds": round(result.seconds, 3),
            }

        return tracked(context, run_id, "canonicalize", tenant_id, work)

    @procrastinate_app.task(name="contract_tenant", queue=BACKFILL_QUEUE, pass_context=True)
    def contract_tenant_job(
        context: JobContext, tenant_id: int, run_id: int | None = None
    ) -> dict[str, Any]:
        def work(tracker: Tracker) -> dict[str, Any]:
            migrate.contract(_engine(), tenant_ids=[tenant_id])
            return {"contracted": True}

        return tracked(context, run_id, "contract", tenant_id, work)

    @procrastinate_app.task(name="uncontract_tenant", queue=BACKFILL_QUEUE, pass_context=True)
    def uncontract_tenant_job(
        context: JobContext, tenant_id: int, run_id: int | None = None
    ) -> dict[str, Any]:
        def work(tracker: Tracker) -> dict[str, Any]:
            if not is_contracted(_engine(), tenant_id):
                raise NotReady(f"tenant {tenant_id} is not contracted: nothing to uncontract")
            migrate.uncontract(_engine(), tenant_ids=[tenant_id])
            return {"contracted": False}

        return tracked(context, run_id, "uncontract", tenant_id, work)

    @procrastinate_app.periodic(cron="* * * * *", periodic_id="retry_stalled")
    @procrastinate_app.task(name="retry_stalled", queue=MAINTENANCE_QUEUE)
    async def retry_stalled(timestamp: int) -> int:
        return await retry_stalled_jobs(procrastinate_app)


def _job_options(
    batch_size: int | None, max_rate: float | None, dry_run: bool = False
) -> RunOptions:
    return RunOptions(
        legacy_sources=get_settings().legacy_sources,
        batch_size=batch_size,
        max_rate=max_rate,
        dry_run=dry_run,
        worker=f"{socket.gethostname()}:job",
    )


def _backfill(
    tracker: Tracker, tenant_id: int, options: RunOptions, only: RangeRef | None = None
) -> dict[str, Any]:
    """A backfill job's work: the tenant (or one range of its run) under the job's controls.
    TenantBusy (another worker holds what it needs) raises: the retry strategy tries later."""
    result = run_tenant(
        _engine(),
        tenant_id,
        options,
        controls=tracker.controls,
        progress=lambda _t, products, _images: _advance_quietly(tracker, products),
        only=only,
    )
    return asdict(result)


def _advance_quietly(tracker: Tracker, units: int) -> None:
    """Progress from a run that has its own controls (a cancel stops it at the next batch
    through `should_stop`, which ends the run cleanly: no exception through it)."""
    with contextlib.suppress(RunCancelled):
        tracker.advance(units)


async def retry_stalled_jobs(procrastinate_app: App) -> int:
    """Give the jobs of dead workers (no heartbeat) back to the queue; count them."""
    manager = procrastinate_app.job_manager
    retried = 0
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER_SECONDS):
        try:
            await manager.retry_job(job)
            retried += 1
            log.warning("backfill.stalled_job_retried", job=job.id, lock=job.lock)
        except UniqueViolation:
            # A newer job for the same tenant is already queued: retire this one, or the
            # tenant would stay stuck behind a job nobody runs.
            await manager.finish_job(job, status=Status.FAILED, delete_job=False)
            log.warning("backfill.stalled_job_retired", job=job.id, lock=job.lock)
    return retried


# The queueing lock (one job queued per tenant and kind) and the lock (one running): the
# schema-changing steps share one, so a canonicalize, a contract and an uncontract of one
# tenant never run at once.
def _locks(kind: job_runs.Kind, tenant_id: int) -> tuple[str, str]:
    queued = f"{kind}:user_{tenant_id}"
    if kind in ("canonicalize", "contract", "uncontract"):
        return queued, f"schema:user_{tenant_id}"
    return queued, queued


TASKS: dict[str, str] = {
    "backfill": "backfill_tenant",
    "enrich": "enrich_tenant",
    "verify": "verify_tenant",
    "audit": "audit_tenant",
    "canonicalize": "canonicalize_tenant",
    "contract": "contract_tenant",
    "uncontract": "uncontract_tenant",
}


def _queue_and_engine(procrastinate_app: App | None, engine: Engine | None) -> tuple[App, Engine]:
    """The queue and the engine of its database (the settings' own by default)."""
    if engine is None:
        if procrastinate_app is not None:  # its database may not be the settings' one
            raise ValueError("give the engine of the queue's database with its procrastinate app")
        engine = _engine()
    return procrastinate_app or queue_app(), engine


def _defer_tracked(
    engine: Engine,
    task: Any,
    tenant_id: int,
    kind: job_runs.Kind,
    locks: tuple[str, str],
    requested_by: str,
    arguments: dict[str, Any],
) -> tuple[int, int] | None:
    """Defer one job with its run row: (run id, job id), or None when its queueing lock says
    one is already queued."""
    queueing_lock, lock = locks
    with engine.begin() as connection:
        run_id = job_runs.create(connection, tenant_id, kind, requested_by)
    try:
        job_id = task.configure(queueing_lock=queueing_lock, lock=lock).defer(
            tenant_id=tenant_id, run_id=run_id, **arguments
        )
    except AlreadyEnqueued:
        with engine.begin() as connection:
            job_runs.forget(connection, run_id)
        return None
    with engine.begin() as connection:
        job_runs.attach(connection, run_id, job_id)
    return run_id, int(job_id)


def enqueue_runs(
    kind: job_runs.Kind,
    tenant_ids: Sequence[int],
    *,
    requested_by: str = "admin API or CLI",
    procrastinate_app: App | None = None,
    engine: Engine | None = None,
    **arguments: Any,
) -> dict[int, tuple[int, int] | None]:
    """Defer one job of a kind per tenant, each with its run row: tenant -> (run id, job id),
    or None for a tenant that already has one queued."""
    procrastinate_app, engine = _queue_and_engine(procrastinate_app, engine)
    queued: dict[int, tuple[int, int] | None] = {}
    with procrastinate_app.open():
        task = procrastinate_app.tasks[TASKS[kind]]
        for tenant_id in tenant_ids:
            queued[tenant_id] = _defer_tracked(
                engine, task, tenant_id, kind, _locks(kind, tenant_id), requested_by, arguments
            )
    return queued


def enqueue_backfill_ranges(
    tenant_ids: Sequence[int],
    *,
    ranges_each: int,
    batch_size: int | None = None,
    max_rate: float | None = None,
    procrastinate_app: App | None = None,
    requested_by: str = "admin API or CLI",
    engine: Engine | None = None,
) -> dict[int, dict[int, tuple[int, int] | None]]:
    """Per tenant, its run split into `ranges_each` key ranges (or its unfinished run, with
    the ranges it has) and one job per unfinished range, for any worker of the pool:
    tenant -> range -> (run id, job id), or None for a range whose job is already queued.
    A tenant not ready or contracted gets the ordinary tenant job (it says why it skips)."""
    procrastinate_app, engine = _queue_and_engine(procrastinate_app, engine)
    arguments: dict[str, Any] = {"batch_size": batch_size, "max_rate": max_rate}
    queued: dict[int, dict[int, tuple[int, int] | None]] = {}
    with procrastinate_app.open():
        for tenant_id in tenant_ids:
            if not is_ready(engine, tenant_id) or is_contracted(engine, tenant_id):
                task = procrastinate_app.tasks[TASKS["backfill"]]
                locks = _locks("backfill", tenant_id)
                job = _defer_tracked(
                    engine, task, tenant_id, "backfill", locks, requested_by, arguments
                )
                queued[tenant_id] = {0: job}
                continue
            schema = quoted_schema(tenant_schema(tenant_id))
            with engine.connect() as connection:
                plan = ranges.start_or_resume(
                    connection, schema, parts=ranges_each, worker="queued"
                )
            task = procrastinate_app.tasks["backfill_range"]
            queued[tenant_id] = {}
            for part in plan.unfinished:
                # Per run and range: a second enqueue of the same run is refused, a later
                # run's ranges are not held up by an old job.
                key = f"backfill:user_{tenant_id}:run:{plan.run_id}:range:{part.range_no}"
                queued[tenant_id][part.range_no] = _defer_tracked(
                    engine,
                    task,
                    tenant_id,
                    "backfill",
                    (key, key),
                    requested_by,
                    {**arguments, "backfill_run": plan.run_id, "range_no": part.range_no},
                )
    return queued


def enqueue_backfills(
    tenant_ids: Sequence[int],
    *,
    batch_size: int | None = None,
    max_rate: float | None = None,
    dry_run: bool = False,
    procrastinate_app: App | None = None,
    requested_by: str = "admin API or CLI",
    engine: Engine | None = None,
) -> dict[int, int | None]:
    """Defer one job per tenant; None for a tenant that already has one queued."""
    queued = enqueue_runs(
        "backfill",
        tenant_ids,
        requested_by=requested_by,
        procrastinate_app=procrastinate_app,
        engine=engine,
        batch_size=batch_size,
        max_rate=max_rate,
        dry_run=dry_run,
    )
    return {tenant: ids[1] if ids else None for tenant, ids in queued.items()}


def enqueue_enrichments(
    tenant_ids: Sequence[int],
    *,
    max_rate: float | None = None,
    retry_failed: bool = False,
    procrastinate_app: App | None = None,
    requested_by: str = "admin API or CLI",
    engine: Engine | None = None,
) -> dict[int, int | None]:
    """Defer one enrichment job per tenant; None for a tenant that already has one queued."""
    queued = enqueue_runs(
        "enrich",
        tenant_ids,
        requested_by=requested_by,
        procrastinate_app=procrastinate_app,
        engine=engine,
        max_rate=max_rate,
        retry_failed=retry_failed,
    )
    return {tenant: ids[1] if ids else None for tenant, ids in queued.items()}


async def cancel_queued_job(procrastinate_app: App, job_id: int) -> bool:
    """Take a job that has not started off the queue (its run was cancelled)."""
    async with procrastinate_app.open_async():
        return bool(await procrastinate_app.job_manager.cancel_job_by_id_async(job_id))


__all__ = [
    "TenantBusy",
    "enqueue_backfill_ranges",
    "enqueue_backfills",
    "enqueue_enrichments",
    "enqueue_runs",
    "queue_app",
    "retry_stalled_jobs",
]
