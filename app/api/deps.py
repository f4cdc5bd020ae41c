"""Request dependencies: the caller, the tenant and the tenant-bound unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import structlog
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.composition import Services
from app.core.database import TenantSession, unit_of_work
from app.core.errors import DomainError
from app.core.security import InvalidToken, Principal, decode_token

_bearer = HTTPBearer(auto_error=False)


class NotAuthenticated(DomainError):
    """401: no valid bearer token."""

    status = 401
    challenge = "Bearer"


class Forbidden(DomainError):
    """403: a valid token without the right to do this."""

    status = 403


def services_of(request: Request) -> Services:
    """The app's services (app/composition.py): the one place a request reaches app.state
    for them."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(services_of)]


def get_engine(services: ServicesDep) -> Engine:
    """The app's engine (one pool per process)."""
    return services.engine


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller from the bearer token; 401 when missing, expired or forged."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise NotAuthenticated("missing bearer token")
    try:
        principal = decode_token(services_of(request).settings.jwt_secret, credentials.credentials)
    except InvalidToken as exc:
        raise NotAuthenticated(f"invalid token: {exc}") from None
    structlog.contextvars.bind_contextvars(user=principal.user_id, admin=principal.is_admin)
    return principal


async def optional_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    """The caller when a valid bearer token is given, else None (never a 401)."""
    try:
        return await current_principal(request, credentials)
    except NotAuthenticated:
        return None


async def current_tenant(
    request: Request, principal: Annotated[Principal, Depends(current_principal)]
) -> int:
    """The caller's tenant id, checked to exist (404 otherwise); bound to every log event."""
    if principal.user_id is None:
        raise Forbidden("this token has no tenant: use a user's token")
    await run_in_threadpool(services_of(request).tenants.require, principal.user_id)
    # Bound here, in the request's own context, so every later event carries it.
    structlog.contextvars.bind_contextvars(tenant=principal.user_id)
    return principal.user_id


async def require_admin(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
    """An operator token (`role: admin`), else 403."""
    if not principal.is_admin:
        raise Forbidden("this action needs an admin token")
    return principal


def tenant_session(
    engine: Annotated[Engine, Depends(get_engine)],
    tenant_id: Annotated[int, Depends(current_tenant)],
) -> Iterator[TenantSession]:
    """The request's tenant unit of work (one transaction bound to the tenant's schema, with
    its id, schema and stage); committed at the edge."""
    with unit_of_work(engine, tenant_id) as session:
        yield session


def admin_session(
    engine: Annotated[Engine, Depends(get_engine)],
    _admin: Annotated[Principal, Depends(require_admin)],
) -> Iterator[Session]:
    """One unit of work on the shared schema, for operators."""
    with unit_of_work(engine) as session:
        yield session


EngineDep = Annotated[Engine, Depends(get_engine)]
TenantId = Annotated[int, Depends(current_tenant)]
# scope="function": the unit of work commits when the route returns, before the response is
# sent. With the default ("request") FastAPI runs the exit code after sending the response:
# a client could read before the write committed, and a commit that fails (a deferred
# constraint) would follow a 2xx already sent. The API bench caught the stale read.
TenantUnit = Annotated[TenantSession, Depends(tenant_session, scope="function")]
AdminSession = Annotated[Session, Depends(admin_session, scope="function")]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]
OptionalPrincipal = Annotated[Principal | None, Depends(optional_principal)]
