"""`/admin`: the operator console (server-rendered; htmx polls the live fragments).

Views read through app/console/state.py; actions call the same functions as the CLI
(`backfill.jobs.enqueue_backfills`, `backfill.verify.verify_tenant`, `flags.store`) with
the same guards, log who did what, and redirect back with a message."""

from __future__ import annotations

import contextlib
import math
import time
from functools import partial
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import structlog
from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app.api.deps import services_of
from app.console.auth import (
    COOKIE,
    ConsoleLoginRequired,
    CsrfRejected,
    admin_from_cookie,
    check_csrf,
    csrf_token,
    message_signature,
    open_session,
    session_store,
    signed_message,
    token_fingerprint,
)
from app.console.sessions import SessionStore
from app.console.state import (
    STAGES,
    RowCache,
    filtered,
    overview,
    recent_runs,
    rejected_elements,
)
from app.console.throttle import LoginThrottle
from app.core.database import quoted_schema, tenant_schema, unit_of_work
from app.core.metrics import INTERLOCK_REFUSALS
from app.core.security import InvalidToken
from app.images import operations
from app.repositories import migration_state
from app.repositories.migration_state import unverified_tenants
from app.services.product_service import list_products
from backfill.audit import TenantAudit, audit_tenant
from backfill.labels import label_reports
from backfill.repair import repair_tenant
from backfill.tenants import UnknownTenants, select_tenants
from backfill.verify import TenantContracted, verify_tenant
from flags.client import Toggle
from flags.store import PER_TENANT, NotVerified, StoreUnavailable, toggle_store

log = structlog.get_logger("console")
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/admin", include_in_schema=False)
PAGE_SIZE = 50

CsrfField = Annotated[str | None, Form(alias="csrf")]


def install(app: FastAPI) -> None:
    """Mount the console, its assets and its error pages on the app."""
    settings = app.state.settings
    app.state.console_sessions = SessionStore(settings.data_dir / "console-sessions")
    app.state.console_login_throttle = LoginThrottle(settings.console_login_failures_per_minute)
    app.mount("/admin/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)

    @app.exception_handler(ConsoleLoginRequired)
    async def _login(request: Request, exc: ConsoleLoginRequired) -> Response:
        if request.method == "GET":
            target = quote(
                request.url.path + (f"?{request.url.query}" if request.url.query else "")
            )
            return RedirectResponse(f"/admin/login?next={target}", status_code=303)
        return _refused(request, 403, str(exc))

    @app.exception_handler(CsrfRejected)
    async def _csrf(request: Request, exc: CsrfRejected) -> Response:
        log.warning("console.csrf_rejected", path=request.url.path)
        return _refused(request, 403, str(exc))


def _refused(request: Request, status: int, reason: str, **headers: str) -> Response:
    response = templates.TemplateResponse(
        request, "refused.html", {"reason": reason, "csrf": ""}, status_code=status
    )
    response.headers.update(headers)
    return _secured(response)


def _secured(response: HTMLResponse) -> HTMLResponse:
    """The headers of every console page, refusals included: no framing, same-origin only."""
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' http: https:; "
        "frame-ancestors 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    return response


def _rows(request: Request) -> RowCache:
    cache: RowCache | None = getattr(request.app.state, "console_rows", None)
    if cache is None:
        cache = RowCache(
            services_of(request).engine,
            services_of(request).flags.flags_for,
            services_of(request).settings.legacy_sources,
        )
        request.app.state.console_rows = cache
    return cache


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        name,
        {"csrf": csrf_token(request), "msg": signed_message(request), **context},
    )
    return _secured(response)


def _address(request: Request) -> str:
    return request.client.host if request.client else "?"


def _who(request: Request) -> str:
    session = session_store(request).lookup(request.cookies.get(COOKIE, ""))
    return f"{session.who if session else 'no session'} from {_address(request)}"


def _back(request: Request, message: str, fallback: str = "/admin") -> RedirectResponse:
    referer = request.headers.get("referer", "")
    path = urlsplit(referer).path if referer else ""
    target = path if path.startswith("/admin") else fallback
    signature = message_signature(request, message)
    return RedirectResponse(f"{target}?msg={quote(message)}&sig={signature}", status_code=303)


# --- sign in ------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/admin") -> HTMLResponse:
    return _page(request, "login.html", next=next if next.startswith("/admin") else "/admin")


@router.post("/login", response_model=None)
def login(
    request: Request,
    token: Annotated[str, Form(max_length=4096)],
    next: Annotated[str, Form()] = "/admin",
) -> Response:
    throttle: LoginThrottle = request.app.state.console_login_throttle
    address = _address(request)
    wait = throttle.retry_after(address)
    if wait:  # the token is not even looked at
        log.warning("console.login_throttled", address=address)
        reason = f"too many failed sign-ins from {address}: try again in {wait} s"
        return _refused(request, 429, reason, **{"Retry-After": str(wait)})
    ttl = services_of(request).settings.jwt_ttl_seconds
    try:
        session_id = open_session(request, token.strip(), ttl)
    except InvalidToken as exc:
        throttle.failed(address)
        log.warning("console.login_failed", address=address, reason=str(exc))
        return _page(request, "login.html", next=next, error=f"token: {exc}")
    except OSError as exc:  # DATA_DIR not writable: say so rather than a bare 500
        log.error("console.session_store_failed", error=str(exc))
        return _refused(request, 503, "cannot open a session: DATA_DIR is not writable")
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
    log.info("console.login", who=f"admin token {token_fingerprint(token.strip())} from {address}")
    return response


@router.post("/logout")
def logout(request: Request, csrf: CsrfField = None) -> RedirectResponse:
    check_csrf(request, csrf)
    log.info("console.logout", who=_who(request))
    session_store(request).close(request.cookies.get(COOKIE, ""))  # the cookie's copies too
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(COOKIE, path="/admin")
    return response


# --- views --------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview_page(request: Request) -> HTMLResponse:
    admin_from_cookie(request)
    cache = _rows(request)
    rows = cache.rows()
    return _page(
        request,
        "overview.html",
        summary=overview(rows),
        stages=STAGES,
        labels=cache.labels(),
        cache=cache,
        refusals=int(INTERLOCK_REFUSALS._value.get()),
        audit=getattr(request.app.state, "console_audit", None),
        paused=services_of(request).flags.is_enabled(Toggle.BACKFILL_PAUSE),
    )


@router.get("/tenants", response_class=HTMLResponse)
def tenants_page(
    request: Request,
    stage: Annotated[str | None, Query()] = None,
    sort: Annotated[str, Query(max_length=20)] = "tenant",
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    admin_from_cookie(request)
    stage = stage if stage in STAGES else None
    cache = _rows(request)
    rows = filtered(cache.rows(), stage=stage, sort=sort, descending=order == "desc")
    pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
    page = min(page, pages)
    return _page(
        request,
        "tenants.html",
        rows=rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE],
        total=len(rows),
        stage=stage,
        stages=STAGES,
        sort=sort,
        order=order,
        page=page,
        pages=pages,
        cache=cache,
    )


@router.get("/tenants/{tenant_id}", response_class=HTMLResponse, response_model=None)
def tenant_page(request: Request, tenant_id: int) -> Response:
    admin_from_cookie(request)
    engine = services_of(request).engine
    try:  # one tenant: read fresh, and kept for its progress poll and the other pages
        rows = _rows(request).read_tenants([tenant_id])
    except UnknownTenants:
        rows = []
    if not rows:
        return _refused(request, 404, f"tenant {tenant_id} does not exist or is not migrated")
    row = rows[0]
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
    labels = (
        None
        if contracted
        else label_reports(engine, [tenant_id], services_of(request).settings.legacy_sources)[0]
    )
    audit = getattr(request.app.state, "console_tenant_audits", {}).get(tenant_id)
    from backfill.enrich import metadata_report

    metadata = next(iter(metadata_report(engine, [tenant_id])[0]), None)
    with engine.connect() as connection:
        drift = migration_state.drift(connection, quoted_schema(tenant_schema(tenant_id)))
    return _page(
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
    )


@router.get("/fragments/progress", response_class=HTMLResponse)
def progress_fragment(request: Request, tenant: int | None = None) -> HTMLResponse:
    admin_from_cookie(request)
    # Served from memory, refreshed in the background (an action patches its tenant's row
    # at once): a poll never scans a tenant, however large, however many tabs poll.
    cache = _rows(request)
    rows = cache.rows()
    if tenant is not None:
        rows = [r for r in rows if r.tenant_id == tenant]
        if not rows:  # a tenant newer than the rows in memory: read it once, and keep it
            with contextlib.suppress(UnknownTenants):
                rows = cache.read_tenants([tenant])
    response = _page(request, "_progress.html", summary=overview(rows), tenant=tenant)
    if tenant is not None and not rows:
        response.status_code = 286  # htmx stops polling: unknown, or not migrated
    return response


# --- actions --------------------------------------------------------------------------------


def _tenant_or_none(raw: str | None) -> int | None:
    if raw in (None, "", "all"):
        return None
    try:
        value = int(str(raw))
    except ValueError:
        raise ValueError(f"tenant: not a tenant id: {raw!r}") from None
    if value < 1:
        raise ValueError(f"tenant: not a tenant id: {raw!r}")
    return value


@router.post("/actions/backfill")
async def enqueue_action(
    request: Request,
    csrf: CsrfField = None,
    tenant: Annotated[str | None, Form()] = None,
) -> Response:
    admin_from_cookie(request)
    check_csrf(request, csrf)
    from app.api.admin.migration import job_queue
    from backfill.jobs import enqueue_backfills

    try:
        target = _tenant_or_none(tenant)
        tenants = await run_in_threadpool(
            select_tenants, services_of(request).engine, [target] if target else None
        )
    except (ValueError, UnknownTenants) as exc:
        return _back(request, f"refused: {exc}")
    queue = job_queue(request)
    jobs = await run_in_threadpool(lambda: enqueue_backfills(tenants, procrastinate_app=queue))
    queued = [t for t, job in jobs.items() if job is not None]
    log.info("console.action", who=_who(request), action="enqueue backfill", tenants=tenants)
    await run_in_threadpool(_refresh, request, target)
    already = len(jobs) - len(queued)
    return _back(
        request,
        f"backfill queued for {len(queued)} tenant(s)"
        + (f", {already} already queued" if already else ""),
    )


@router.post("/actions/pause")
def pause_action(
    request: Request,
    csrf: CsrfField = None,
    paused: Annotated[str, Form(pattern="^(on|off)$")] = "on",
) -> Response:
    admin_from_cookie(request)
    check_csrf(request, csrf)
    message = _set_toggle(request, "backfill-pause", None, paused == "on")
    return _back(request, message)


async def _one_tenant(request: Request, tenant: str | None, action: str) -> int:
    """The form's one tenant, known to exist (ValueError, UnknownTenants otherwise)."""
    target = _tenant_or_none(tenant)
    if target is None:
        raise ValueError(f"tenant: {action} one tenant at a time from the console")
    await run_in_threadpool(select_tenants, services_of(request).engine, [target])
    return target


@router.post("/actions/verify")
async def verify_action(
    request: Request, csrf: CsrfField = None, tenant: Annotated[str | None, Form()] = None
) -> Response:
    admin_from_cookie(request)
    check_csrf(request, csrf)
    try:
        target = await _one_tenant(request, tenant, "verify")
        report = await run_in_threadpool(verify_tenant, services_of(request).engine, target)
    except (ValueError, UnknownTenants, TenantContracted) as exc:
        return _back(request, f"refused: {exc}")
    log.info(
        "console.action",
        who=_who(request),
        action="verify",
        tenant=target,
        verified=report.is_verified,
    )
    await run_in_threadpool(_refresh, request, target)
    outcome = (
        "verified"
        if report.is_verified
        else f"NOT verified: {report.mismatched_products} product(s) differ"
    )
    return _back(request, f"tenant {target}: {outcome}")


@router.post("/actions/repair")
async def repair_action(
    request: Request, csrf: CsrfField = None, tenant: Annotated[str | None, Form()] = None
) -> Response:
    admin_from_cookie(request)
    check_csrf(request, csrf)
    try:
        target = await _one_tenant(request, tenant, "repair")
        result = await run_in_threadpool(
            partial(
                repair_tenant,
                services_of(request).engine,
                target,
                legacy_sources=services_of(request).settings.legacy_sources,
            )
        )
    except (ValueError, UnknownTenants, TenantContracted) as exc:
        return _back(request, f"refused: {exc}")
    log.info(
        "console.action",
        who=_who(request),
        action="repair",
        tenant=target,
        products=len(result.products),
    )
    await run_in_threadpool(_refresh, request, target)
    failed = "".join(
        f"; product {product_id} NOT rebuilt: {reason}"
        for product_id, reason in result.failed.items()
    )
    return _back(
        request,
        f"tenant {target}: {len(result.products)} product(s) rebuilt from the JSONB{failed}; "
        "verify it now",
    )


@router.post("/actions/flag")
def flag_action(
    request: Request,
    csrf: CsrfField = None,
    tenant: Annotated[str | None, Form()] = None,
    toggle: Annotated[str, Form(pattern="^(read-table|shadow-compare)$")] = "read-table",
    enable: Annotated[str, Form(pattern="^(on|off)$")] = "on",
) -> Response:
    admin_from_cookie(request)
    check_csrf(request, csrf)
    try:
        target = _tenant_or_none(tenant)
        if target is None:
            raise ValueError("tenant: give the tenant")
        select_tenants(services_of(request).engine, [target])
    except (ValueError, UnknownTenants) as exc:
        return _back(request, f"refused: {exc}")
    return _back(request, _set_toggle(request, toggle, target, enable == "on"))


def _set_toggle(request: Request, toggle: str, tenant: int | None, on: bool) -> str:
    engine = services_of(request).engine
    try:
        store = toggle_store(
            services_of(request).settings, unverified=partial(unverified_tenants, engine)
        )
    except StoreUnavailable as exc:
        return f"refused: {exc}"
    try:
        if tenant is None:
            store.set_enabled(Toggle.BACKFILL_PAUSE if toggle == "backfill-pause" else toggle, on)
            result = f"{toggle}: {'on' if on else 'off'}"
        else:
            name = PER_TENANT[toggle]
            targeted = store.set_tenants(
                name, add=[tenant] if on else [], remove=[] if on else [tenant]
            )
            result = f"{toggle}: tenants {targeted}"
    except NotVerified:  # the store's interlock: nothing was changed
        log.warning("console.action_refused", who=_who(request), action=toggle, tenant=tenant)
        return f"refused: tenant {tenant} is not verified; run verify first"
    except Exception as exc:  # the store's own errors name the server and the reason
        log.error("console.action_failed", toggle=toggle, tenant=tenant, error=str(exc))
        return f"failed: {exc}"
    finally:
        store.close()
    reload = getattr(services_of(request).flags, "reload", None)
    if reload is not None and not services_of(request).settings.unleash_url:
        reload()  # the file watcher would within a second; the page shows it at once
    log.info(
        "console.action", who=_who(request), action=toggle, tenant=tenant, on=on, result=result
    )
    _refresh(request, tenant)
    return result


def _refresh(request: Request, tenant: int | None) -> None:
    """After an action, the next view shows its effect: the tenant's row is read now, or,
    after an action on every tenant, all rows are read on the next view. The action has
    committed: a failure to read the row must not turn its answer into an error."""
    cache = _rows(request)
    if tenant is not None:
        try:
            cache.read_tenants([tenant])
            return
        except Exception as exc:
            log.warning("console.row_refresh_failed", tenant=tenant, error=str(exc))
    cache.invalidate()


@router.post("/actions/audit")
async def audit_action(
    request: Request, csrf: CsrfField = None, tenant: Annotated[str | None, Form()] = None
) -> Response:
    admin_from_cookie(request)
    check_csrf(request, csrf)
    engine = services_of(request).engine
    try:
        target = _tenant_or_none(tenant)
        tenants = await run_in_threadpool(select_tenants, engine, [target] if target else None)
    except (ValueError, UnknownTenants) as exc:
        return _back(request, f"refused: {exc}")

    def run() -> list[TenantAudit]:
        return [
            audit_tenant(engine, t, services_of(request).images, services_of(request).converters)
            for t in tenants
        ]

    audits = await run_in_threadpool(run)
    per_tenant = getattr(request.app.state, "console_tenant_audits", {})
    for audit in audits:
        per_tenant[audit.tenant_id] = audit
    request.app.state.console_tenant_audits = per_tenant
    if target is None:
        request.app.state.console_audit = {
            "at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "products": sum(a.products for a in audits),
            "leaking": {
                name: sum(a.marketplaces[name].leaking for a in audits)
                for name in services_of(request).converters
            },
        }
    leaking = sum(a.leaking for a in audits)
    log.info("console.action", who=_who(request), action="audit", tenants=len(tenants))
    return _back(request, f"audit: {leaking} payload(s) would publish a label")
