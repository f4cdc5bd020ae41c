"""`/api/admin/backfill` and `/api/admin/migration`: queue backfills, watch the migration."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from procrastinate import App
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.api.deps import AdminPrincipal, EngineDep, services_of
from app.api.errors import ERROR_RESPONSES
from backfill.enqueue import enqueue_backfills, enqueue_enrichments
from backfill.jobs import build_app, register_tasks
from backfill.status import tenant_status
from backfill.tenants import select_tenants


def job_queue(request: Request) -> App:
    """The app's procrastinate app, on the app's own database (built on first use)."""
    queue: App | None = getattr(request.app.state, "job_queue", None)
    if queue is None:
        queue = build_app(
            str(services_of(request).engine.url.render_as_string(hide_password=False))
        )
        register_tasks(queue)
        request.app.state.job_queue = queue
    return queue


router = APIRouter(prefix="/api/admin", tags=["admin"], responses=ERROR_RESPONSES)

# Images per second; finite (Infinity and NaN would reach the job's JSON arguments: a 500).
MaxRate = Annotated[float | None, Field(ge=1, allow_inf_nan=False)]


class TenantSelection(BaseModel):
    """Which tenants: `tenant_ids`, or `all: true` for every tenant. An empty or missing list
    is refused: it used to mean every tenant, silently."""

    model_config = ConfigDict(extra="forbid")

    all: bool = False
    tenant_ids: Annotated[
        list[Annotated[int, Field(gt=0)]] | None, Field(max_length=10_000, validate_default=True)
    ] = None

    @field_validator("tenant_ids")
    @classmethod
    def _explicit(cls, value: list[int] | None, info: ValidationInfo) -> list[int] | None:
        every = info.data.get("all", False)
        if every and value is not None:
            raise ValueError("give tenant_ids or all: true, not both")
        if not every and not value:
            raise ValueError("give at least one tenant id, or all: true for every tenant")
        return value

    @property
    def requested(self) -> list[int] | None:
        """The tenant ids for `select_tenants` (None: every tenant, asked for explicitly)."""
        return None if self.all else self.tenant_ids


class BackfillRequest(TenantSelection):
    """Which tenants to backfill and how."""

    batch_size: Annotated[int | None, Field(ge=1, le=100_000)] = None
    max_rate: MaxRate = None
    dry_run: bool = False


class QueuedJob(BaseModel):
    """A tenant's job id, or null when a job for it was already queued."""

    tenant_id: int
    job_id: int | None


class BackfillQueued(BaseModel):
    """The jobs created."""

    jobs: list[QueuedJob]


class TenantMigration(BaseModel):
    """One tenant's migration state (backfill.status.TenantStatus over HTTP)."""

    tenant_id: int
    products: int
    jsonb_images: int
    table_rows: int
    rejected: int
    labels: int
    migrated_percent: float
    verified_at: datetime | None
    last_run_status: str | None
    last_run_at: datetime | None
    last_run_rate: float | None


@router.post(
    "/backfill",
    response_model=BackfillQueued,
    status_code=status.HTTP_202_ACCEPTED,
    responses={422: {"description": "Unknown tenant id, no tenant given, or a bad value"}},
)
async def queue_backfill(
    body: BackfillRequest, engine: EngineDep, request: Request, _admin: AdminPrincipal
) -> BackfillQueued:
    """Queue one backfill job per tenant and return at once; workers do the work."""
    tenants = await run_in_threadpool(select_tenants, engine, body.requested)
    jobs = await run_in_threadpool(
        lambda: enqueue_backfills(
            tenants,
            batch_size=body.batch_size,
            max_rate=body.max_rate,
            dry_run=body.dry_run,
            procrastinate_app=job_queue(request),
            engine=engine,
        )
    )
    return BackfillQueued(
        jobs=[QueuedJob(tenant_id=tenant, job_id=job) for tenant, job in jobs.items()]
    )


class EnrichRequest(TenantSelection):
    """Which tenants to enrich and how."""

    max_rate: MaxRate = None
    retry_failed: bool = False


@router.post(
    "/enrich",
    response_model=BackfillQueued,
    status_code=status.HTTP_202_ACCEPTED,
    responses={422: {"description": "Unknown tenant id, no tenant given, or a bad value"}},
)
async def queue_enrichment(
    body: EnrichRequest, engine: EngineDep, request: Request, _admin: AdminPrincipal
) -> BackfillQueued:
    """Queue one metadata-enrichment job per tenant and return at once."""
    tenants = await run_in_threadpool(select_tenants, engine, body.requested)
    jobs = await run_in_threadpool(
        lambda: enqueue_enrichments(
            tenants,
            max_rate=body.max_rate,
            retry_failed=body.retry_failed,
            procrastinate_app=job_queue(request),
            engine=engine,
        )
    )
    return BackfillQueued(
        jobs=[QueuedJob(tenant_id=tenant, job_id=job) for tenant, job in jobs.items()]
    )


@router.get("/migration", response_model=list[TenantMigration])
def migration_state(engine: EngineDep, _admin: AdminPrincipal) -> list[TenantMigration]:
    """Per tenant: counts, migrated share, verification, last run and its rate."""
    return [
        TenantMigration.model_validate(row, from_attributes=True)
        for row in tenant_status(engine, select_tenants(engine, None))
    ]
