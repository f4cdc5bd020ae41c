"""`/admin`: the operator console (server-rendered; htmx polls the live fragments): sign-in
and the views. Views read through app/console/state.py; the actions are in
app/console/actions.py, the job runs and their controls in app/console/runs.py."""

from __future__ import annotations

import contextlib
import math
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from app.api.deps import services_of
from app.console import actions, changes, runs
from app.console.auth import (
    COOKIE,
    AdminCookie,
    ConsoleLoginRequired,
    Csrf,
    CsrfRejected,
    open_session,
    session_store,
    token_fingerprint,
)
from app.console.pages import HERE, address, log, page, refused, rows, who
from app.console.sessions import SessionStore
from app.console.state import STAGES, filtered, overview, recent_runs, rejected_elements
from app.console.throttle import LoginThrottle
from app.core import metrics
from app.core.database import quoted_schema, tenant_schema, unit_of_work
from app.core.security import InvalidToken
from app.images import operations
from app.repositories import migration_state
from app.services.product_service import list_products
from app.services.read_origins import origin_stats
from backfill import job_runs, knobs
from backfill.contract import list_backups
from backfill.labels import label_reports
from backfill.tenants import UnknownTenants
from flags.client import Toggle

router = APIRouter(prefix="/admin", include_in_schema=False)
PAGE_SIZE = 50


def install(app: FastAPI) -> None:
    """Mount the console, its assets and its error pages on the app."""
    settings = app.state.services.settings
    app.state.console_sessions = SessionStore(settings.data_dir / "console-sessions")
    app.state.console_login_throttle = LoginThrottle(settings.console_login_failures_per_minute)
    app.mount("/admin/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)
    app.include_router(actions.router)
    app.include_router(changes.router)
    app.include_router(runs.router)

    @app.exception_handler(ConsoleLoginRequired)
    async def _login(request: Request, exc: ConsoleLoginRequired) -> Response:
        if request.method == "GET":
            target = quote(
                request.url.path + (f"?{request.url.query}" if request.url.query else "")
            )
            return RedirectResponse(f"/admin/login?next={target}", status_code=303)
        return refused(request, 403, str(exc))

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, exc: CsrfRejected) -> Response:
        log.warning("console.csrf_rejected", path=request.url.path)
        return refused(request, 403, str(exc))


# --- sign in ------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/admin") -> HTMLResponse:
    return page(request, "login.html", next=next if next.startswith("/admin") else "/admin")


@router.post("/login", response_model=None)
def login(
    request: Request,
    token: Annotated[str, Form(max_length=4096)],
    next: Annotated[str, Form()] = "/admin",
) -> Response:
    throttle: LoginThrottle = request.app.state.console_login_throttle
    client = address(request)
    wait = throttle.retry_after(client)
    if wait:  # the token is not even looked at
        log.warning("console.login_throttled", address=client)
        reason = f"too many failed sign-ins from {client}: try again in {wait} s"
        return refused(request, 429, reason, **{"Retry-After": str(wait)})
    ttl = services_of(request).settings.jwt_ttl_seconds
    try:
        session_id = open_session(request, token.strip(), ttl)
    except InvalidToken as exc:
        throttle.failed(client)
        log.warning("console.login_failed", address=client, reason=str(exc))
        return page(request, "login.html", next=next, error=f"token: {exc}")
    except OSError as exc:  # DATA_DIR not writable: say so rather than a bare 500
        log.error("console.session_store_failed", error=str(exc))
        return refused(request, 503, "cannot open a session: DATA_DIR is not writable")
    target = next if next.startswith("/admin") and not next.startswith("/admin/login") else "/admin"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/admin",
        max_age=ttl,
    )
    log.info("console.login", who=f"admin token {token_fingerprint(token.strip())} from {client}")
    return response


@router.post("/logout")
def logout(request: Request, _csrf: Csrf) -> RedirectResponse:
    log.info("console.logout", who=who(request))
    session_store(request).close(request.cookies.get(COOKIE, ""))  # the cookie's copies too
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(COOKIE, path="/admin")
    return response


# --- views --------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview_page(request: Request, _admin: AdminCookie) -> HTMLResponse:
    cache = rows(request)
    return page(
        request,
        "overview.html",
        summary=overview(cache.rows()),
        stages=STAGES,
        labels=cache.labels(),
        cache=cache,
        refusals=int(metrics.sample_value("product_images_interlock_refusals_total")),
        audits=job_runs.latest_results(services_of(request).engine, "audit"),
        paused=services_of(request).flags.is_enabled(Toggle.BACKFILL_PAUSE),
    )


@router.get("/tenants", response_class=HTMLResponse)
def tenants_page(
    request: Request,
    _admin: AdminCookie,
    stage: Annotated[str | None, Query()] = None,
    sort: Annotated[str, Query(max_length=20)] = "tenant",
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
    number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    stage = stage if stage in STAGES else None
    cache = rows(request)
    listed = filtered(cache.rows(), stage=stage, sort=sort, descending=order == "desc")
    pages = max(1, math.ceil(len(listed) / PAGE_SIZE))
    number = min(number, pages)
    return page(
        request,
        "tenants.html",
        rows=listed[(number - 1) * PAGE_SIZE : number * PAGE_SIZE],
        total=len(listed),
        stage=stage,
        stages=STAGES,
        sort=sort,
        order=order,
        page=number,
        pages=pages,
        cache=cache,
    )


@router.get("/tenants/{tenant_id}", response_class=HTMLResponse, response_model=None)
def tenant_page(request: Request, tenant_id: int, _admin: AdminCookie) -> Response:
    engine = services_of(request).engine
    try:  # one tenant: read fresh, and kept for its progress poll and the other pages
        fresh = rows(request).read_tenants([tenant_id])
    except UnknownTenants:
        fresh = []
    if not fresh:
        return refused(request, 404, f"tenant {tenant_id} does not exist or is not migrated")
    row = fresh[0]
    samples = []
    with unit_of_work(engine, tenant_id) as session:
        for product in list_products(session, after=None, limit=12):
            listed = services_of(request).images.list_images(session, product_id=product.id)
            samples.append(
                {
                    "product": product,
                    "photos": operations.photos(listed.images),
                    "label": operations.label(listed.images),
                    "read_path": listed.read_path.value,
                }
            )
    contracted = row.status.is_contracted
    labels = None
    if not contracted:
        # skip_contracted: a contract job may drop the column after the row was read (the
        # page answered 500 when it did); the page then simply shows no label report.
        found = label_reports(
            engine,
            [tenant_id],
            services_of(request).settings.legacy_sources,
            skip_contracted=True,
        )
        labels = next((r for r in found if r.tenant_id == tenant_id), None)
    audit = next(iter(job_runs.latest_results(engine, "audit", [tenant_id])), None)
    from backfill.enrich import metadata_report

    metadata = next(iter(metadata_report(engine, [tenant_id])[0]), None)
    with engine.connect() as connection:
        drift = migration_state.drift(connection, quoted_schema(tenant_schema(tenant_id)))
        in_force = knobs.in_force(connection, tenant_id)
    return page(
        request,
        "tenant.html",
        row=row,
        summary=overview([row]),
        tenant=tenant_id,
        runs=recent_runs(engine, tenant_id),
        rejected=rejected_elements(engine, tenant_id),
        samples=samples,
        labels=labels,
        audit=audit,
        contracted=contracted,
        metadata=metadata,
        drift=drift,
        backups=list_backups(engine, tenant_id),
        knobs=in_force,
        origins=origin_stats(engine, tenant_id),
        runs_of_jobs=job_runs.recent(engine, [tenant_id], limit=runs.LISTED),
        paused=services_of(request).flags.is_enabled(Toggle.BACKFILL_PAUSE),
    )


@router.get("/fragments/progress", response_class=HTMLResponse)
def progress_fragment(
    request: Request, _admin: AdminCookie, tenant: int | None = None
) -> HTMLResponse:
    # Served from memory, refreshed in the background (an action patches its tenant's row
    # at once): a poll never scans a tenant, however large, however many tabs poll.
    cache = rows(request)
    shown = cache.rows()
    if tenant is not None:
        shown = [r for r in shown if r.tenant_id == tenant]
        if not shown:  # a tenant newer than the rows in memory: read it once, and keep it
            with contextlib.suppress(UnknownTenants):
                shown = cache.read_tenants([tenant])
    response = page(request, "_progress.html", summary=overview(shown), tenant=tenant)
    if tenant is not None and not shown:
        response.status_code = 286  # htmx stops polling: unknown, or not migrated
    return response
