"""Tenants: a user in `public.users` owning the schema `user_<id>`, created by migrating it."""

from __future__ import annotations

import threading
import time

import structlog
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.core import migrate
from app.core.database import unit_of_work
from app.core.errors import DomainError
from app.models import User
from app.repositories import migration_state

log = structlog.get_logger(__name__)


class TenantNotFound(DomainError, LookupError):
    """No tenant has this id."""

    status = 404

    def __init__(self, tenant_id: int) -> None:
        super().__init__(f"tenant {tenant_id} does not exist")
        self.tenant_id = tenant_id


class EmailTaken(DomainError, ValueError):
    """Another user already has this email."""

    status = 409
    field = "email"


def create_tenant(
    engine: Engine, *, email: str, display_name: str | None = None, contract: bool = False
) -> User:
    """Insert the user, then migrate its new schema to head (never create_all + stamp).
    `contract` (CONTRACT_NEW_TENANTS, once the fleet is contracted): the new, empty tenant is
    verified and contracted at once, so it starts table-only like the others."""
    with unit_of_work(engine) as session:
        if session.scalar(select(User.id).where(User.email == email)) is not None:
            raise EmailTaken(f"a user with email {email!r} already exists")
        user = User(email=email, display_name=display_name)
        session.add(user)
        session.flush()
    migrate.upgrade(engine, tenant_ids=[user.id])
    if contract:
        with unit_of_work(engine, user.id) as tenant:  # no product yet: verified, canonical
            migration_state.mark_new_tenant_verified(tenant, tenant.quoted_schema, user.id)
        migrate.contract(engine, tenant_ids=[user.id])
    log.info("tenant.created", tenant=user.id, contracted=contract)
    return user


class TenantDirectory:
    """Answers "does tenant N exist?" with a short positive cache (no catalogue query per call)."""

    def __init__(self, engine: Engine, *, ttl_seconds: float = 60.0) -> None:
        self._engine = engine
        self._ttl = ttl_seconds
        self._seen: dict[int, float] = {}
        self._lock = threading.Lock()

    def require(self, tenant_id: int) -> None:
        """Raise TenantNotFound unless the tenant exists."""
        now = time.monotonic()
        with self._lock:
            seen_at = self._seen.get(tenant_id)
        if seen_at is not None and now - seen_at < self._ttl:
            return
        with Session(self._engine) as session:
            exists = session.get(User, tenant_id) is not None
        if not exists:
            raise TenantNotFound(tenant_id)
        with self._lock:
            self._seen[tenant_id] = now
