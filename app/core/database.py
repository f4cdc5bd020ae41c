"""The database: URL resolution (embedded PostgreSQL by default), engine and tenant sessions."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar, overload

import structlog
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, SessionTransaction

from app.core.settings import Settings

log = structlog.get_logger(__name__)

_TENANT_SCHEMA = re.compile(r"^user_[1-9][0-9]{0,17}$")
_embedded_lock = threading.Lock()
_embedded_servers: dict[Path, Any] = {}
_S = TypeVar("_S", bound=Session)


class InvalidTenantId(ValueError):
    """A tenant id that cannot name a schema (not a positive integer)."""


def tenant_schema(tenant_id: int) -> str:
    """The schema of a tenant, built only from a validated positive integer id."""
    if isinstance(tenant_id, bool) or not isinstance(tenant_id, int):
        raise InvalidTenantId(f"tenant id must be an integer, got {type(tenant_id).__name__}")
    if not 0 < tenant_id < 10**18:
        raise InvalidTenantId(f"tenant id must be a positive integer below 10^18, got {tenant_id}")
    return f"user_{tenant_id}"


def quoted_schema(schema: str) -> str:
    """Quote a tenant schema name for raw SQL, refusing anything that is not `user_<id>`."""
    if schema != "public" and not _TENANT_SCHEMA.fullmatch(schema):
        raise InvalidTenantId(f"not a tenant schema name: {schema!r}")
    return f'"{schema}"'


def tenant_id_of(schema: str) -> int:
    """The tenant id of a `user_<id>` schema name."""
    if not _TENANT_SCHEMA.fullmatch(schema):
        raise InvalidTenantId(f"not a tenant schema name: {schema!r}")
    return int(schema.removeprefix("user_"))


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the project's own PostgreSQL under `data_dir/pg` and return its URL."""
    import pgserver  # imported lazily: only needed when DATABASE_URL is not set

    # Its at-exit cleanup logs after stderr may be closed; keep it to warnings.
    logging.getLogger("pgserver").setLevel(logging.WARNING)

    pgdata = (data_dir / "pg").resolve()
    with _embedded_lock:
        server = _embedded_servers.get(pgdata)
        if server is None:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            log.info("embedded_postgres.starting", pgdata=str(pgdata))
            server = pgserver.get_server(pgdata)  # type: ignore[attr-defined]
            _embedded_servers[pgdata] = server
    return str(server.get_uri())


def sqlalchemy_url(url: str) -> str:
    """Pin the psycopg 3 driver on a plain `postgresql://` URL."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def resolve_database_url(settings: Settings) -> str:
    """`DATABASE_URL` when set, else the embedded server's URL."""
    return sqlalchemy_url(settings.database_url or embedded_database_url(settings.data_dir))


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine with a pool that survives a PostgreSQL restart (pre-ping) and fails fast."""
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=10,
        connect_args={"connect_timeout": 5, "application_name": "product-images"},
    )


def tenant_engine(engine: Engine, tenant_id: int) -> Engine:
    """The engine seen through a tenant's schema: unqualified tables resolve to `user_<id>`."""
    return engine.execution_options(schema_translate_map={None: tenant_schema(tenant_id)})


class TenantSession(Session):
    """A tenant's unit of work: one session bound to the tenant's schema that knows its tenant
    id and schema (set once, at the edge that opened it) and carries the stage its current
    transaction resolved, so no layer below decodes them again.

    Opened only by `unit_of_work(engine, tenant_id)`: the API's `deps.tenant_session`, the
    CLIs and the jobs. `stage` is written by app/services/image_paths.py on the first
    decision of a transaction and forgotten when the transaction ends (the stage may move on
    between transactions: a verify, a flag); it is typed loosely here because the stage's
    type lives above the core (flags.stages.Resolution).
    """

    def __init__(self, engine: Engine, tenant_id: int) -> None:
        self.tenant_id = tenant_id
        self.schema = tenant_schema(tenant_id)
        self.quoted_schema = quoted_schema(self.schema)
        self.stage: object | None = None
        super().__init__(bind=tenant_engine(engine, tenant_id), expire_on_commit=False)


@event.listens_for(TenantSession, "after_transaction_end")
def _forget_the_stage(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None and isinstance(session, TenantSession):
        session.stage = None


@overload
def unit_of_work(engine: Engine) -> AbstractContextManager[Session]: ...
@overload
def unit_of_work(engine: Engine, tenant_id: int) -> AbstractContextManager[TenantSession]: ...
@overload
def unit_of_work(engine: Engine, tenant_id: int | None) -> AbstractContextManager[Session]: ...


def unit_of_work(engine: Engine, tenant_id: int | None = None) -> AbstractContextManager[Session]:
    """One transaction: commit on success, roll back on error (the edge owns it). With a
    tenant id, the session is that tenant's unit of work (`TenantSession`)."""
    if tenant_id is None:
        return _transaction(Session(bind=engine, expire_on_commit=False))
    return _transaction(TenantSession(engine, tenant_id))


@contextmanager
def _transaction(session: _S) -> Iterator[_S]:
    with session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
