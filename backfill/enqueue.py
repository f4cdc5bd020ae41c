"""Deferring tenant jobs: one per tenant and kind (a queueing lock), each with its run row
created first, so the console lists it before a worker takes it; the schema-changing steps
of one tenant share one lock, so they never run at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from procrastinate import App
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy import Engine

from app.core.database import quoted_schema, tenant_schema
from app.repositories.migration_state import runs
from backfill import job_runs
from backfill.jobs import queue_app
from backfill.queue import worker_engine
from backfill.tenants import is_contracted, is_ready


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
        engine = worker_engine()
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
                plan = runs.start_or_resume(connection, schema, parts=ranges_each, worker="queued")
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
