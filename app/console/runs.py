"""Job runs in the console: the list (every tenant's, or one tenant's, polled live: state,
progress, rate, ETA, errors) and each run's pause, resume and cancel, which the job takes at
its next batch (backfill/job_runs.py, backfill/controls.py `RunRequests`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from app.api.admin.migration import job_queue
from app.api.deps import services_of
from app.console.auth import AdminCookie, Csrf
from app.console.pages import audit_log, back, page, refused, tenant_page
from backfill import job_runs
from backfill.enqueue import cancel_queued_job

router = APIRouter(prefix="/admin", include_in_schema=False)
LISTED = 15


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request, _admin: AdminCookie) -> HTMLResponse:
    listed = job_runs.recent(services_of(request).engine, limit=100)
    return page(request, "runs.html", runs_of_jobs=listed, tenant=None)


@router.get("/fragments/runs", response_class=HTMLResponse)
def runs_fragment(
    request: Request,
    _admin: AdminCookie,
    tenant: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    engine = services_of(request).engine
    listed = job_runs.recent(
        engine, [tenant] if tenant is not None else None, limit=LISTED if tenant else 100
    )
    return page(request, "_runs.html", runs_of_jobs=listed, tenant=tenant)


@router.post("/runs/{run_id}/{control}")
async def control_run(
    request: Request,
    run_id: int,
    control: Literal["pause", "resume", "cancel"],
    _admin: AdminCookie,
    _csrf: Csrf,
) -> Response:
    engine = services_of(request).engine
    try:
        run = await run_in_threadpool(job_runs.request, engine, run_id, control)
    except job_runs.NotControllable as exc:
        found = await run_in_threadpool(job_runs.get, engine, run_id)
        return refused(request, 409, str(exc), back=tenant_page(found.tenant_id if found else None))
    if control == "cancel" and run.state == "cancelled" and run.job_id is not None:
        # Never started: off the queue too (a worker that took it meanwhile finds the
        # request and ends the run at once).
        await cancel_queued_job(job_queue(request), run.job_id)
    audit_log(request, f"{control} run", run=run_id, tenant=run.tenant_id, kind=run.kind)
    effect = {
        "pause": "pauses at its next batch",
        "resume": "goes on",
        "cancel": "cancelled" if run.state == "cancelled" else "stops at its next batch",
    }[control]
    return back(request, f"run {run_id} ({run.kind}, tenant {run.tenant_id}): {effect}")
