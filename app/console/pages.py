"""What every console route shares: its templates, the page and refusal responses with the
console's headers, the redirect back with a signed message, who is acting (the audit log's
`console.action`), the tenants' rows in memory and their refresh after an action."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import structlog
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from app.api.deps import services_of
from app.console.auth import (
    COOKIE,
    csrf_token,
    message_signature,
    session_store,
    signed_message,
)
from app.console.state import RowCache
from backfill.tenants import select_tenants

log = structlog.get_logger("console")
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")


def secured(response: HTMLResponse) -> HTMLResponse:
    """The headers of every console page, refusals included: no framing, same-origin only."""
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' http: https:; "
        "frame-ancestors 'none'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    return response


def refused(
    request: Request, status: int, reason: str, *, back: str | None = None, **headers: str
) -> Response:
    """The refusal page: what was refused and why (a guard's own words), and the way back."""
    response = templates.TemplateResponse(
        request,
        "refused.html",
        {"reason": reason, "csrf": csrf_token(request) if back else "", "back": back},
        status_code=status,
    )
    response.headers.update(headers)
    return secured(response)


def page(request: Request, name: str, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        name,
        {"csrf": csrf_token(request), "msg": signed_message(request), **context},
    )
    return secured(response)


def address(request: Request) -> str:
    return request.client.host if request.client else "?"


def who(request: Request) -> str:
    """The admin (a fingerprint of the token that opened the session) and the address."""
    session = session_store(request).lookup(request.cookies.get(COOKIE, ""))
    return f"{session.who if session else 'no session'} from {address(request)}"


def audit_log(request: Request, action: str, **fields: Any) -> None:
    """The audit log's line for an action that was carried out (or queued)."""
    log.info("console.action", who=who(request), action=action, **fields)


def back(request: Request, message: str, fallback: str = "/admin") -> RedirectResponse:
    """Back to the page the form was on, with a message the next page shows."""
    referer = request.headers.get("referer", "")
    path = urlsplit(referer).path if referer else ""
    target = path if path.startswith("/admin") and "/confirm/" not in path else fallback
    signature = message_signature(request, message)
    return RedirectResponse(f"{target}?msg={quote(message)}&sig={signature}", status_code=303)


def rows(request: Request) -> RowCache:
    """The tenants' rows the console's pages and pollers share (built on first use)."""
    cache: RowCache | None = getattr(request.app.state, "console_rows", None)
    if cache is None:
        cache = RowCache(
            services_of(request).engine,
            services_of(request).flags.flags_for,
            services_of(request).settings.legacy_sources,
        )
        request.app.state.console_rows = cache
    return cache


def refresh(request: Request, tenant: int | None) -> None:
    """After an action, the next view shows its effect: the tenant's row is read now, or,
    after an action on every tenant, all rows are read on the next view. The action has
    committed: a failure to read the row must not turn its answer into an error."""
    cache = rows(request)
    if tenant is not None:
        try:
            cache.read_tenants([tenant])
            return
        except Exception as exc:
            log.warning("console.row_refresh_failed", tenant=tenant, error=str(exc))
    cache.invalidate()


def tenant_or_none(raw: str | None) -> int | None:
    """A form's tenant: an id, or None for every tenant ("all" or nothing)."""
    if raw in (None, "", "all"):
        return None
    try:
        value = int(str(raw))
    except ValueError:
        raise ValueError(f"tenant: not a tenant id: {raw!r}") from None
    if value < 1:
        raise ValueError(f"tenant: not a tenant id: {raw!r}")
    return value


async def one_tenant(request: Request, tenant: str | None, action: str) -> int:
    """The form's one tenant, known to exist (ValueError, UnknownTenants otherwise)."""
    target = tenant_or_none(tenant)
    if target is None:
        raise ValueError(f"tenant: {action} one tenant at a time from the console")
    await run_in_threadpool(select_tenants, services_of(request).engine, [target])
    return target


def tenant_page(tenant: int | None) -> str:
    return f"/admin/tenants/{tenant}" if tenant else "/admin"
