"""The console's actions on tenants, forward and back: each calls the function the CLI calls,
behind the same guards, and logs who did it (`console.action`). Work that can take long
(backfill, verify, audit, enrich, canonicalize, contract, uncontract) is queued as a job
(backfill/jobs.py) whose run the tenant page follows; a guard's refusal is shown with its
reason (refused.html), from the request or, for a job, in its run's row.

Over 300 lines because each of its nine actions is the same three short steps (guard, call,
log) on its own route."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from app.api.admin.migration import job_queue
from app.api.deps import services_of
from app.console.auth import AdminCookie, Csrf
from app.console.pages import (
    audit_log,
    back,
    one_tenant,
    refresh,
    refused,
    tenant_or_none,
    tenant_page,
    who,
)
from app.repositories.migration_state import unverified_tenants
from backfill import job_runs
from backfill.enqueue import enqueue_runs
from backfill.repair import repair_tenant
from backfill.tenants import UnknownTenants, is_contracted, select_tenants
from backfill.verify import TenantContracted
from flags.client import Toggle
from flags.store import PER_TENANT, NotVerified, StoreUnavailable, toggle_store

router = APIRouter(prefix="/admin/actions", include_in_schema=False)

TenantField = Annotated[str | None, Form()]


async def enqueue(
    request: Request, kind: job_runs.Kind, tenants: list[int], **arguments: Any
) -> dict[int, tuple[int, int] | None]:
    """One job of `kind` per tenant, each with its run row, on the app's own queue."""
    queue = job_queue(request)
    engine = services_of(request).engine
    requested_by = who(request)
    return await run_in_threadpool(
        lambda: enqueue_runs(
            kind,
            tenants,
            requested_by=requested_by,
            procrastinate_app=queue,
            engine=engine,
            **arguments,
        )
    )


def queued_message(kind: str, queued: dict[int, tuple[int, int] | None]) -> str:
    """What the page says after queueing: the run (one tenant) or the counts."""
    if len(queued) == 1:
        ((tenant, ids),) = queued.items()
        if ids is None:
            return f"tenant {tenant}: a {kind} is already queued"
        return f"tenant {tenant}: {kind} queued as run {ids[0]} (see Jobs)"
    done = sum(ids is not None for ids in queued.values())
    already = len(queued) - done
    return f"{kind} queued for {done} tenant(s)" + (
        f", {already} already queued" if already else ""
    )


@router.post("/backfill")
async def enqueue_backfill(
    request: Request, _admin: AdminCookie, _csrf: Csrf, tenant: TenantField = None
) -> Response:
    try:
        target = tenant_or_none(tenant)
        tenants = await run_in_threadpool(
            select_tenants, services_of(request).engine, [target] if target else None
        )
    except (ValueError, UnknownTenants) as exc:
        return refused(request, 409, str(exc), back=tenant_page(None))
    queued = await enqueue(request, "backfill", tenants)
    audit_log(request, "enqueue backfill", tenants=tenants)
    await run_in_threadpool(refresh, request, target)
    done = sum(ids is not None for ids in queued.values())
    already = len(queued) - done
    return back(
        request,
        f"backfill queued for {done} tenant(s)"
        + (f", {already} already queued" if already else ""),
    )


async def _queue_one(
    request: Request, kind: job_runs.Kind, tenant: str | None, **arguments: Any
) -> Response:
    """Queue one tenant's job after the edge's own checks (the tenant exists; a verify or an
    enrich needs its JSONB or its table; a contract or an uncontract its current shape)."""
    engine = services_of(request).engine
    try:
        target = await one_tenant(request, tenant, kind)
        contracted = await run_in_threadpool(is_contracted, engine, target)
    except (ValueError, UnknownTenants) as exc:
        return refused(request, 409, str(exc), back=tenant_page(None))
    reason = {
        ("verify", True): f"tenant {target} is contracted: products.images is gone, nothing "
        "to compare",
        ("canonicalize", True): f"tenant {target} is contracted: its JSONB is gone",
        ("contract", True): f"tenant {target} is already contracted",
        ("uncontract", False): f"tenant {target} is not contracted: nothing to uncontract",
    }.get((kind, contracted))
    if reason:
        audit_log(request, f"{kind} refused", tenant=target, reason=reason)
        return refused(request, 409, reason, back=tenant_page(target))
    queued = await enqueue(request, kind, [target], **arguments)
    audit_log(request, f"enqueue {kind}", tenant=target, run=(queued[target] or (None,))[0])
    return back(request, queued_message(kind, queued), fallback=tenant_page(target))


@router.post("/verify")
async def verify_action(
    request: Request, _admin: AdminCookie, _csrf: Csrf, tenant: TenantField = None
) -> Response:
    return await _queue_one(request, "verify", tenant)


@router.post("/enrich")
async def enrich_action(
    request: Request,
    _admin: AdminCookie,
    _csrf: Csrf,
    tenant: TenantField = None,
    retry_failed: Annotated[str, Form(pattern="^(on|off)$")] = "off",
) -> Response:
    return await _queue_one(request, "enrich", tenant, retry_failed=retry_failed == "on")


@router.post("/canonicalize")
async def canonicalize_action(
    request: Request, _admin: AdminCookie, _csrf: Csrf, tenant: TenantField = None
) -> Response:
    return await _queue_one(request, "canonicalize", tenant)


def typed_confirmation(tenant: str | None, confirm: str | None) -> str | None:
    """Why a destructive action's confirmation does not hold (None: it does)."""
    if not confirm or confirm.strip() != (tenant or "").strip():
        return "confirm: type the tenant's id to confirm this action"
    return None


@router.post("/contract")
async def contract_action(
    request: Request,
    _admin: AdminCookie,
    _csrf: Csrf,
    tenant: TenantField = None,
    confirm: Annotated[str | None, Form(max_length=20)] = None,
) -> Response:
    unconfirmed = typed_confirmation(tenant, confirm)
    if unconfirmed:
        return refused(request, 400, unconfirmed, back=f"/admin/tenants/{tenant}/confirm/contract")
    return await _queue_one(request, "contract", tenant)


@router.post("/uncontract")
async def uncontract_action(
    request: Request,
    _admin: AdminCookie,
    _csrf: Csrf,
    tenant: TenantField = None,
    confirm: Annotated[str | None, Form(max_length=20)] = None,
) -> Response:
    unconfirmed = typed_confirmation(tenant, confirm)
    if unconfirmed:
        return refused(
            request, 400, unconfirmed, back=f"/admin/tenants/{tenant}/confirm/uncontract"
        )
    return await _queue_one(request, "uncontract", tenant)


@router.post("/audit")
async def audit_action(
    request: Request, _admin: AdminCookie, _csrf: Csrf, tenant: TenantField = None
) -> Response:
    engine = services_of(request).engine
    try:
        target = tenant_or_none(tenant)
        tenants = await run_in_threadpool(select_tenants, engine, [target] if target else None)
    except (ValueError, UnknownTenants) as exc:
        return refused(request, 409, str(exc), back=tenant_page(None))
    queued = await enqueue(request, "audit", tenants)
    audit_log(request, "enqueue audit", tenants=len(tenants))
    return back(request, queued_message("audit", queued))


@router.post("/pause")
def pause_action(
    request: Request,
    _admin: AdminCookie,
    _csrf: Csrf,
    paused: Annotated[str, Form(pattern="^(on|off)$")] = "on",
) -> Response:
    return back(request, set_toggle(request, "backfill-pause", None, paused == "on"))


@router.post("/repair")
async def repair_action(
    request: Request, _admin: AdminCookie, _csrf: Csrf, tenant: TenantField = None
) -> Response:
    try:
        target = await one_tenant(request, tenant, "repair")
        result = await run_in_threadpool(
            partial(
                repair_tenant,
                services_of(request).engine,
                target,
                legacy_sources=services_of(request).settings.legacy_sources,
            )
        )
    except (ValueError, UnknownTenants, TenantContracted) as exc:
        return refused(request, 409, str(exc), back=tenant_page(tenant_or_none_quiet(tenant)))
    audit_log(request, "repair", tenant=target, products=len(result.products))
    await run_in_threadpool(refresh, request, target)
    failed = "".join(
        f"; product {product_id} NOT rebuilt: {reason}"
        for product_id, reason in result.failed.items()
    )
    return back(
        request,
        f"tenant {target}: {len(result.products)} product(s) rebuilt from the JSONB{failed}; "
        "verify it now",
    )


def tenant_or_none_quiet(raw: str | None) -> int | None:
    """The form's tenant for a link back, or None when it is not an id."""
    try:
        return tenant_or_none(raw)
    except ValueError:
        return None


@router.post("/flag")
def flag_action(
    request: Request,
    _admin: AdminCookie,
    _csrf: Csrf,
    tenant: TenantField = None,
    toggle: Annotated[str, Form(pattern="^(read-table|shadow-compare)$")] = "read-table",
    enable: Annotated[str, Form(pattern="^(on|off)$")] = "on",
) -> Response:
    try:
        target = tenant_or_none(tenant)
        if target is None:
            raise ValueError("tenant: give the tenant")
        select_tenants(services_of(request).engine, [target])
    except (ValueError, UnknownTenants) as exc:
        return refused(request, 409, str(exc), back=tenant_page(None))
    result = set_toggle(request, toggle, target, enable == "on")
    if result.startswith("refused: "):
        return refused(request, 409, result.removeprefix("refused: "), back=tenant_page(target))
    return back(request, result)


def set_toggle(request: Request, toggle: str, tenant: int | None, on: bool) -> str:
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
        audit_log(request, f"{toggle} refused", tenant=tenant)
        return f"refused: tenant {tenant} is not verified; run verify first"
    except Exception as exc:  # the store's own errors name the server and the reason
        audit_log(request, f"{toggle} failed", tenant=tenant, error=str(exc))
        return f"failed: {exc}"
    finally:
        store.close()
    reload = getattr(services_of(request).flags, "reload", None)
    if reload is not None and not services_of(request).settings.unleash_url:
        reload()  # the file watcher would within a second; the page shows it at once
    audit_log(request, toggle, tenant=tenant, on=on, result=result)
    refresh(request, tenant)
    return result
