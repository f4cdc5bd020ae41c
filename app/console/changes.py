"""The console's destructive steps and data changes: the confirmation page (the tenant's id
typed: contract, uncontract, restore a backup), restoring a backup, uploading a
label-overrides CSV, and a tenant's backfill knobs (rate, batch size). Each calls the CLI's
function behind its guards and logs who did it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from app.api.deps import services_of
from app.console.actions import TenantField, typed_confirmation
from app.console.auth import AdminCookie, Csrf
from app.console.pages import audit_log, back, one_tenant, page, refresh, refused, tenant_page
from backfill import knobs
from backfill.contract import ContractRefused, restore_backup
from backfill.overrides import OverridesFileInvalid, apply_overrides, read_overrides
from backfill.tenants import UnknownTenants, select_tenants

router = APIRouter(prefix="/admin", include_in_schema=False)

# What each confirmation page says will happen (the RUNBOOK's words for the step).
CONFIRMED = {
    "contract": (
        "Contract",
        "Drop products.images for this tenant, behind the guards (verified, no drift, canonical "
        "JSONB, no long transaction), after a backup. Runs as a job; uncontract brings it back.",
    ),
    "uncontract": (
        "Uncontract",
        "Re-add products.images for this tenant, rebuilt from the table with every key. Runs as "
        "a job.",
    ),
    "restore": (
        "Restore backup",
        "Put this backup's JSONB back, product by product; the rows of the restored products "
        "are removed (backfill brings them back) and the tenant is no longer verified.",
    ),
}


@router.get("/tenants/{tenant_id}/confirm/{action}", response_class=HTMLResponse)
def confirm_page(
    request: Request, tenant_id: int, action: str, _admin: AdminCookie, backup: int | None = None
) -> Response:
    if action not in CONFIRMED or (action == "restore") != (backup is not None):
        return refused(request, 404, f"nothing to confirm: {action}", back=tenant_page(tenant_id))
    try:
        select_tenants(services_of(request).engine, [tenant_id])
    except UnknownTenants as exc:
        return refused(request, 404, str(exc), back=tenant_page(None))
    title, what = CONFIRMED[action]
    return page(
        request,
        "confirm.html",
        tenant=tenant_id,
        action=action,
        title=title,
        what=what,
        backup=backup,
    )


@router.post("/actions/restore")
async def restore_action(
    request: Request,
    _admin: AdminCookie,
    _csrf: Csrf,
    backup: Annotated[int, Form(ge=1)],
    tenant: TenantField = None,
    confirm: Annotated[str | None, Form(max_length=20)] = None,
) -> Response:
    unconfirmed = typed_confirmation(tenant, confirm)
    if unconfirmed:
        again = f"/admin/tenants/{tenant}/confirm/restore?backup={backup}"
        return refused(request, 400, unconfirmed, back=again)
    engine = services_of(request).engine
    try:
        target = await one_tenant(request, tenant, "restore")
        restored = await run_in_threadpool(restore_backup, engine, target, backup)
    except (ValueError, UnknownTenants) as exc:
        return refused(request, 409, str(exc), back=tenant_page(None))
    except ContractRefused as exc:
        audit_log(request, "restore refused", tenant=tenant, backup=backup, reason=str(exc))
        return refused(request, 409, str(exc), back=tenant_page(int(str(tenant))))
    audit_log(request, "restore", tenant=target, backup=backup, products=restored)
    await run_in_threadpool(refresh, request, target)
    return back(
        request,
        f"tenant {target}: {restored} product(s) restored from backup {backup}; the tenant is "
        "no longer verified: Backfill, then Verify",
        fallback=tenant_page(target),
    )


@router.post("/actions/overrides")
async def overrides_action(
    request: Request,
    _admin: AdminCookie,
    _csrf: Csrf,
    file: Annotated[UploadFile, File()],
    tenant: TenantField = None,
) -> Response:
    """A label-overrides CSV for this tenant (`apply-overrides`): read and checked whole
    first (one bad line refuses the file, named by its line); the console's form body limit
    bounds its size."""
    engine = services_of(request).engine
    try:
        target = await one_tenant(request, tenant, "apply overrides to")
    except (ValueError, UnknownTenants) as exc:
        return refused(request, 409, str(exc), back=tenant_page(None))
    name = Path(file.filename or "overrides.csv").name
    content = await file.read()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "overrides.csv"
        path.write_bytes(content)
        try:
            overrides = read_overrides(path)
        except OverridesFileInvalid as exc:
            reason = f"{name}: " + str(exc).replace(f"{path}: ", "")
            return refused(request, 400, reason + "; nothing applied", back=tenant_page(target))
        except UnicodeDecodeError:
            reason = f"{name}: not UTF-8 text; nothing applied"
            return refused(request, 400, reason, back=tenant_page(target))
    others = sorted({o.line for o in overrides if o.tenant_id != target})
    if others:
        reason = (
            f"{name}: line {others[0]} is for another tenant (this page applies tenant "
            f"{target}'s lines only); nothing applied"
        )
        return refused(request, 400, reason, back=tenant_page(target))
    service = services_of(request).images  # the app's flags: the kill switch holds here too
    outcomes = await run_in_threadpool(apply_overrides, engine, overrides, service)
    failed = [o for o in outcomes if not o.applied]
    audit_log(
        request,
        "apply overrides",
        tenant=target,
        file=name,
        lines=len(outcomes),
        refused=len(failed),
    )
    await run_in_threadpool(refresh, request, target)
    detail = "".join(
        f"; line {o.override.line}: product {o.override.product_id}: {o.reason}" for o in failed
    )
    return back(
        request,
        f"tenant {target}: {len(outcomes) - len(failed)} override(s) applied, "
        f"{len(failed)} refused{detail}",
        fallback=tenant_page(target),
    )


@router.post("/actions/knobs")
async def knobs_action(
    request: Request,
    _admin: AdminCookie,
    _csrf: Csrf,
    tenant: TenantField = None,
    max_rate: Annotated[str, Form(max_length=30)] = "",
    batch_size: Annotated[str, Form(max_length=30)] = "",
    clear: Annotated[str, Form(pattern="^(yes|no)$")] = "no",
) -> Response:
    """`backfill tune` for one tenant: taken by its running backfill at the next batch."""
    engine = services_of(request).engine
    try:
        target = await one_tenant(request, tenant, "tune")
        if clear == "yes":
            await run_in_threadpool(knobs.clear, engine, target)
            audit_log(request, "tune", tenant=target, cleared=True)
            return back(request, f"tenant {target}: knobs cleared", fallback=tenant_page(target))
        rate = float(max_rate) if max_rate.strip() else None
        size = int(batch_size) if batch_size.strip() else None
        if rate is None and size is None:
            raise ValueError("give a max rate, a batch size, or both")
        await run_in_threadpool(lambda: knobs.turn(engine, target, max_rate=rate, batch_size=size))
    except (ValueError, UnknownTenants) as exc:  # InvalidKnob is a ValueError naming its field
        field = getattr(exc, "field", None)
        reason = f"{field}: {exc}" if field else str(exc)
        return refused(request, 409, reason, back=tenant_page(None))
    audit_log(request, "tune", tenant=target, max_rate=rate, batch_size=size)
    return back(
        request,
        f"tenant {target}: max rate {rate if rate is not None else 'unchanged'}, batch size "
        f"{size if size is not None else 'unchanged'}: taken at the next batch",
        fallback=tenant_page(target),
    )
