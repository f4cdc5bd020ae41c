"""Tenant jobs on procrastinate (a PostgreSQL job queue in the same database): backfill,
enrich, verify, audit, canonicalize, contract and uncontract, one job per tenant and kind, each
with its run row (backfill/job_runs.py: progress, pause, resume, cancel); any number of
workers on any number of machines, stalled jobs taken over. The tasks' bodies are here;
the queue's plumbing is backfill/queue.py, deferring them backfill/enqueue.py, a job's run
row while it works backfill/job_tracking.py.

Over 300 lines because every task (seven kinds, each a few lines of work under `tracked`)
is registered in the one function procrastinate is given."""

from __future__ import annotations

import socket
from dataclasses import asdict
from functools import lru_cache
from typing import Any

import structlog
from procrastinate import App, JobContext, RetryStrategy
from procrastinate.exceptions import UniqueViolation
from procrastinate.jobs import Status
from sqlalchemy import Engine, text

from app.core import migrate
from app.core.database import quoted_schema, tenant_schema
from app.core.settings import get_settings
from app.repositories.migration_state import runs
from app.repositories.migration_state.runs import RangeRef
from backfill.audit import TenantAudit, audit_tenant
from backfill.contract import canonicalize_tenant
from backfill.job_tracking import NotReady, Tracker, advance_quietly, tracked
from backfill.queue import (
    BACKFILL_QUEUE,
    MAINTENANCE_QUEUE,
    STALLED_AFTER_SECONDS,
    build_app,
    worker_engine,
    worker_services,
)
from backfill.runner import RunOptions, TenantBusy, run_tenant
from backfill.tenants import is_contracted
from backfill.verify import TenantContracted, verify_tenant

log = structlog.get_logger("backfill.jobs")


@lru_cache(maxsize=1)
def queue_app() -> App:
    """The process's procrastinate app, with the tasks registered (built on first use)."""
    procrastinate_app = build_app()
    register_tasks(procrastinate_app)
    return procrastinate_app


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
        plan = runs.load(connection, schema, part.run_id)
        found = [r for r in plan.ranges if r.range_no == part.range_no] if plan else []
        if not found or found[0].is_done:
            return 0
        return runs.products_left(connection, schema, found[0])


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
            contracted = is_contracted(worker_engine(), tenant_id)
            tracker.set_total(
                0 if contracted else _count(worker_engine(), tenant_id, without_rows=True)
            )
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
            tracker.set_total(_range_left(worker_engine(), tenant_id, part))
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
            if not is_ready(worker_engine(), tenant_id):
                raise NotReady(f"tenant {tenant_id}: not migrated to head, nothing to enrich")
            tracker.set_total(pending_count(worker_engine(), tenant_id, retry_failed=retry_failed))
            (result,) = enrich_tenants(
                worker_engine(),
                # With the worker's flags: the kill switch holds in jobs too.
                worker_services().images,
                [tenant_id],
                EnrichOptions(max_rate=max_rate, retry_failed=retry_failed),
                controls=tracker.controls,
                progress=lambda _t, images: advance_quietly(tracker, images),
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
            if is_contracted(worker_engine(), tenant_id):
                raise TenantContracted(
                    f"tenant {tenant_id} is contracted: products.images is gone, nothing to compare"
                )
            tracker.set_total(_count(worker_engine(), tenant_id))
            report = verify_tenant(worker_engine(), tenant_id, progress=tracker.advance)
            return report.summary()

        return tracked(context, run_id, "verify", tenant_id, work)

    @procrastinate_app.task(name="audit_tenant", queue=BACKFILL_QUEUE, pass_context=True)
    def audit_tenant_job(
        context: JobContext, tenant_id: int, run_id: int | None = None
    ) -> dict[str, Any]:
        def work(tracker: Tracker) -> dict[str, Any]:
            tracker.set_total(_count(worker_engine(), tenant_id))
            services = worker_services()
            reload = getattr(services.flags, "reload", None)
            if reload is not None:  # a local toggle file: the stage as it is now, not 1 s ago
                reload()
            audit = audit_tenant(
                worker_engine(), tenant_id, services.images, services.converters, tracker.advance
            )
            return _audit_summary(audit)

        return tracked(context, run_id, "audit", tenant_id, work)

    @procrastinate_app.task(name="canonicalize_tenant", queue=BACKFILL_QUEUE, pass_context=True)
    def canonicalize_tenant_job(
        context: JobContext, tenant_id: int, run_id: int | None = None
    ) -> dict[str, Any]:
        def work(tracker: Tracker) -> dict[str, Any]:
            tracker.set_total(_count(worker_engine(), tenant_id))
            result = canonicalize_tenant(worker_engine(), tenant_id)
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
            migrate.contract(worker_engine(), tenant_ids=[tenant_id])
            return {"contracted": True}

        return tracked(context, run_id, "contract", tenant_id, work)

    @procrastinate_app.task(name="uncontract_tenant", queue=BACKFILL_QUEUE, pass_context=True)
    def uncontract_tenant_job(
        context: JobContext, tenant_id: int, run_id: int | None = None
    ) -> dict[str, Any]:
        def work(tracker: Tracker) -> dict[str, Any]:
            if not is_contracted(worker_engine(), tenant_id):
                raise NotReady(f"tenant {tenant_id} is not contracted: nothing to uncontract")
            migrate.uncontract(worker_engine(), tenant_ids=[tenant_id])
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
        worker_engine(),
        tenant_id,
        options,
        controls=tracker.controls,
        progress=lambda _t, products, _images: advance_quietly(tracker, products),
        only=only,
    )
    return asdict(result)


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


__all__ = [
    "BACKFILL_QUEUE",
    "MAINTENANCE_QUEUE",
    "TenantBusy",
    "build_app",
    "queue_app",
    "register_tasks",
    "retry_stalled_jobs",
]
