"""Liveness and readiness probes, and the Prometheus metrics (mounted only when
SERVE_METRICS is on: default off with APP_ENV=production)."""

from __future__ import annotations

import structlog
from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.api.deps import EngineDep, OptionalPrincipal
from app.core.metrics import registry

log = structlog.get_logger(__name__)
router = APIRouter(tags=["health"])
metrics_router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@metrics_router.get("/metrics", response_class=PlainTextResponse)
def metrics() -> PlainTextResponse:
    """Prometheus metrics: of every worker under multiprocess mode (PROMETHEUS_MULTIPROC_DIR,
    set by `python -m app serve --workers N`), else of this process."""
    return PlainTextResponse(generate_latest(registry()), media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz", responses={503: {"description": "Database unreachable"}})
async def readyz(engine: EngineDep, caller: OptionalPrincipal) -> JSONResponse:
    """The database answers. Why not is logged, and told to operators (admin token) only:
    the driver's error names hosts, ports and users."""

    def ping() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(ping)
    except SQLAlchemyError as exc:
        reason = str(exc).splitlines()[0]
        log.warning("readyz.unavailable", reason=reason)
        body = {"status": "unavailable"}
        if caller is not None and caller.is_admin:
            body["reason"] = reason
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ready"})
