"""A job's run row while it works (backfill/job_runs.py): started, its progress written at
most once a second, the operator's pause and cancel read with it, then done, refused (a guard
said no: not retried), cancelled or failed (raised again: retried)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, Literal

import structlog
from procrastinate import JobContext
from sqlalchemy import Engine

from backfill import job_runs
from backfill.contract import ContractRefused
from backfill.controls import RunRequests
from backfill.job_runs import RunCancelled
from backfill.queue import worker_engine, worker_pause
from backfill.verify import TenantContracted

log = structlog.get_logger("backfill.jobs")


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
        return own or worker_pause().is_paused()

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

    engine = worker_engine()
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


def advance_quietly(tracker: Tracker, units: int) -> None:
    """Progress from a run that has its own controls (a cancel stops it at the next batch
    through `should_stop`, which ends the run cleanly: no exception through it)."""
    with contextlib.suppress(RunCancelled):
        tracker.advance(units)
