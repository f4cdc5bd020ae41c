"""Backfill jobs on procrastinate (a PostgreSQL job queue in the same database): one job per
tenant, any number of workers on any number of machines, stalled jobs taken over."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import asdict
from functools import lru_cache
from typing import Any

import structlog
from procrastinate import App, JobContext, PsycopgConnector, RetryStrategy
from procrastinate.exceptions import AlreadyEnqueued, UniqueViolation
from procrastinate.jobs import Status
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from app.composition import Services, build
from app.core.database import make_engine, resolve_database_url
from app.core.settings import get_settings
from backfill.controls import PauseToggle
from backfill.runner import RunOptions, TenantBusy, run_tenant

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
    """A job stops between batches when asked to abort; pauses like any run."""

    def __init__(self, context: JobContext) -> None:
        self.context = context

    def should_stop(self) -> bool:
        """The job was asked to abort (or the worker is shutting down)."""
        return bool(self.context.should_abort())

    def is_paused(self) -> bool:
        """The backfill-pause toggle (one flags client per worker process)."""
        return _pause().is_paused()

    def sleep(self, seconds: float) -> None:
        """Plain sleep (jobs run in worker threads)."""
        time.sleep(seconds)


def register_tasks(procrastinate_app: App) -> None:
    """Register the backfill task and the stalled-job sweeper on an app."""

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
    ) -> dict[str, Any]:
        options = RunOptions(
            legacy_sources=get_settings().legacy_sources,
            batch_size=batch_size,
            max_rate=max_rate,
            dry_run=dry_run,
            worker=f"{socket.gethostname()}:job",
        )
        # TenantBusy (a CLI run holds the tenant) raises: the retry strategy tries later.
        result = run_tenant(_engine(), tenant_id, options, controls=JobControls(context))
        return asdict(result)

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
    ) -> dict[str, Any]:
        from backfill.enrich import EnrichOptions, enrich_tenants

        (result,) = enrich_tenants(
            _engine(),
            _services().images,  # with the worker's flags: the kill switch holds in jobs too
            [tenant_id],
            EnrichOptions(max_rate=max_rate, retry_failed=retry_failed),
            controls=JobControls(context),
        )
        summary = asdict(result)
        summary["reasons"] = dict(result.reasons)
        return summary

    @procrastinate_app.periodic(cron="* * * * *", periodic_id="retry_stalled")
    @procrastinate_app.task(name="retry_stalled", queue=MAINTENANCE_QUEUE)
    async def retry_stalled(timestamp: int) -> int:
        return await retry_stalled_jobs(procrastinate_app)


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


def enqueue_backfills(
    tenant_ids: Sequence[int],
    *,
    batch_size: int | None = None,
    max_rate: float | None = None,
    dry_run: bool = False,
    procrastinate_app: App | None = None,
) -> dict[int, int | None]:
    """Defer one job per tenant; None for a tenant that already has one queued."""
    procrastinate_app = procrastinate_app or queue_app()
    job_ids: dict[int, int | None] = {}
    with procrastinate_app.open():
        task = procrastinate_app.tasks["backfill_tenant"]
        for tenant_id in tenant_ids:
            key = f"backfill:user_{tenant_id}"
            try:
                job_ids[tenant_id] = task.configure(queueing_lock=key, lock=key).defer(
                    tenant_id=tenant_id, batch_size=batch_size, max_rate=max_rate, dry_run=dry_run
                )
            except AlreadyEnqueued:
                job_ids[tenant_id] = None
    return job_ids


def enqueue_enrichments(
    tenant_ids: Sequence[int],
    *,
    max_rate: float | None = None,
    retry_failed: bool = False,
    procrastinate_app: App | None = None,
) -> dict[int, int | None]:
    """Defer one enrichment job per tenant; None for a tenant that already has one queued."""
    procrastinate_app = procrastinate_app or queue_app()
    job_ids: dict[int, int | None] = {}
    with procrastinate_app.open():
        task = procrastinate_app.tasks["enrich_tenant"]
        for tenant_id in tenant_ids:
            key = f"enrich:user_{tenant_id}"
            try:
                job_ids[tenant_id] = task.configure(queueing_lock=key, lock=key).defer(
                    tenant_id=tenant_id, max_rate=max_rate, retry_failed=retry_failed
                )
            except AlreadyEnqueued:
                job_ids[tenant_id] = None
    return job_ids


__all__ = [
    "TenantBusy",
    "enqueue_backfills",
    "enqueue_enrichments",
    "queue_app",
    "retry_stalled_jobs",
]
