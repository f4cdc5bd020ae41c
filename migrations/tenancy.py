"""The per-schema loop behind env.py: options, retries, blocker reports, progress.

Over 300 lines because the loop's options, its retries on lock timeouts, its blocker reports
and its refusals (unknown tenants, destroying downgrades) are one loop's parts."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, MetaData, create_engine, pool, text
from sqlalchemy.exc import DBAPIError

from app.core.database import quoted_schema, resolve_database_url, tenant_schema
from app.core.settings import get_settings
from migrations.guards import DISCARD_BACKUPS_KEY
from migrations.scope import SCOPE_KEY, Scope

log = structlog.get_logger("migrations")

LOCK_NOT_AVAILABLE = "55P03"
DEFAULT_LOCK_RETRIES = 8
BACKOFF_START_S = 1.0
BACKOFF_CAP_S = 60.0


class TenantMigrationFailed(CommandError):
    """One or more schemas could not be migrated; the others are consistent. A CommandError:
    the `alembic` command prints it as `FAILED: ...` and exits non-zero (255: alembic's own
    `sys.exit(-1)`), without a traceback."""


@dataclass(frozen=True)
class MigrationRun:
    """What one Alembic invocation was asked to do."""

    command: str
    tenant_ids: tuple[int, ...] | None
    scope: str = "all"
    lock_timeout_ms: int = 500
    lock_retries: int = DEFAULT_LOCK_RETRIES
    # The contract history (alembic.ini [contract]) keeps its own version table per schema.
    version_table: str = "alembic_version"
    # `-x discard_backups=true`: a downgrade may drop a tenant's image_backups.
    discard_backups: bool = False
    # A tenant schema migrated with no user owning it (pytest-alembic's revision walk, whose
    # database has no users): programmatic runs only; an operator's mistyped id is refused.
    allow_unknown_tenants: bool = False
    engine: Engine | None = None
    sleep: Any = field(default=time.sleep, repr=False)

    @classmethod
    def from_alembic(cls, config: Config, x: Mapping[str, str]) -> MigrationRun:
        """Read `-x` options (CLI) or `config.attributes` (programmatic runs)."""
        attrs = config.attributes
        command = attrs.get("command") or _cli_command(config)
        raw_tenants = attrs.get("tenant_ids")
        if raw_tenants is None and x.get("tenant"):
            raw_tenants = [_parse_tenant(part) for part in x["tenant"].split(",") if part]
        section = config.config_ini_section
        default_scope = config.get_section_option(section, "default_scope", "all") or "all"
        scope = attrs.get("scope") or x.get("scope", default_scope)
        if scope not in ("all", "public", "tenants"):
            raise SystemExit(f"-x scope must be all, public or tenants, got {scope!r}")
        settings = get_settings()
        return cls(
            command=command,
            tenant_ids=None if raw_tenants is None else tuple(int(t) for t in raw_tenants),
            scope=scope,
            lock_timeout_ms=_int_option(
                "lock_timeout_ms", attrs, x, settings.migration_lock_timeout_ms
            ),
            lock_retries=_int_option("lock_retries", attrs, x, DEFAULT_LOCK_RETRIES),
            version_table=config.get_section_option(section, "version_table", "alembic_version")
            or "alembic_version",
            discard_backups=_bool_option("discard_backups", attrs, x),
            allow_unknown_tenants=bool(attrs.get("allow_unknown_tenants", False)),
            engine=attrs.get("engine"),
            sleep=attrs.get("sleep", time.sleep),
        )

    @property
    def touches_public(self) -> bool:
        """Public moves on upgrades; a downgrade leaves it alone unless `-x scope=public`."""
        if self.scope == "public":
            return True
        return self.scope == "all" and self.command != "downgrade"

    @property
    def touches_tenants(self) -> bool:
        """Tenant schemas move unless the run is restricted to public."""
        return self.scope != "public"


def _int_option(name: str, attrs: Mapping[str, Any], x: Mapping[str, str], default: int) -> int:
    """A non-negative integer from `config.attributes`, else `-x name=...`, else the default."""
    raw: object = attrs.get(name)
    if raw is None:
        raw = x.get(name, default)
    try:
        value = int(str(raw))
    except (TypeError, ValueError):
        raise SystemExit(f"-x {name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise SystemExit(f"-x {name} must not be negative, got {value}")
    return value


def _bool_option(name: str, attrs: Mapping[str, Any], x: Mapping[str, str]) -> bool:
    """A yes/no from `config.attributes`, else `-x name=true|false`; false by default."""
    raw: object = attrs.get(name)
    if isinstance(raw, bool):
        return raw
    text_value = str(x.get(name, "false") if raw is None else raw).strip().lower()
    if text_value not in ("true", "false", "yes", "no", "1", "0"):
        raise SystemExit(f"-x {name} must be true or false, got {text_value!r}")
    return text_value in ("true", "yes", "1")


def _cli_command(config: Config) -> str:
    cmd = getattr(config.cmd_opts, "cmd", None)
    return str(cmd[0].__name__) if cmd else "upgrade"


def _parse_tenant(raw: str) -> int:
    try:
        tenant_id = int(raw)
        tenant_schema(tenant_id)
    except ValueError as exc:
        raise SystemExit(f"-x tenant must be positive integer ids, got {raw!r}: {exc}") from None
    return tenant_id


def run_offline(context: Any, run: MigrationRun, metadata: MetaData) -> None:
    """Emit SQL for one tenant schema (`-x tenant=<id>` required) or for public."""
    if run.scope == "public":
        schemas: list[tuple[str, Scope]] = [("public", "public")]
    elif run.tenant_ids:
        schemas = [(tenant_schema(t), "tenant") for t in run.tenant_ids]
    else:
        raise SystemExit("offline (--sql) mode needs -x tenant=<id> or -x scope=public")
    url = resolve_database_url(get_settings())
    for schema, scope in schemas:
        context.configure(
            url=url,
            target_metadata=metadata,
            literal_binds=True,
            version_table_schema=schema,
            version_table=run.version_table,
            tag=scope,
        )
        with context.begin_transaction():
            context.execute(f"SET LOCAL search_path TO {quoted_schema(schema)}")
            context.execute(f"SET LOCAL lock_timeout = '{run.lock_timeout_ms}ms'")
            context.run_migrations()


def run_online(context: Any, run: MigrationRun, metadata: MetaData) -> None:
    """Migrate public, then each tenant schema in its own transaction."""
    engine = run.engine or create_engine(
        resolve_database_url(get_settings()), poolclass=pool.NullPool
    )
    failures: dict[str, str] = {}
    with engine.connect() as connection:
        connection.execute(text(f"SET lock_timeout = '{run.lock_timeout_ms}ms'"))
        connection.commit()
        try:
            _migrate_all(context, connection, run, metadata, failures)
        finally:
            # The connection may be the app's pooled one (a tenant created through the API):
            # a session-level lock_timeout must not follow it back into request traffic.
            if not connection.invalidated:
                connection.rollback()
                connection.execute(text("RESET lock_timeout"))
                connection.commit()
    if failures:
        detail = "; ".join(f"{schema}: {reason}" for schema, reason in failures.items())
        raise TenantMigrationFailed(
            f"{len(failures)} schema(s) not migrated (the others are consistent; "
            f"fix the cause and rerun): {detail}"
        )


def _refuse_unknown_tenants(connection: Connection, tenant_ids: tuple[int, ...]) -> None:
    """An upgrade names only tenants that exist: a mistyped id would otherwise build an
    orphan schema no tenant owns (and that `alembic current` never lists). Before public is
    migrated there is no users table, so no tenant yet."""
    known: set[int] = set()
    if connection.execute(text("SELECT to_regclass('public.users')")).scalar() is not None:
        known = set(
            connection.execute(
                text("SELECT id FROM public.users WHERE id = ANY(:ids)"),
                {"ids": list(tenant_ids)},
            ).scalars()
        )
    connection.commit()
    unknown = [t for t in tenant_ids if t not in known]
    if unknown:
        raise TenantMigrationFailed(
            f"no tenant with id {', '.join(map(str, unknown))} in public.users: nothing "
            "migrated (create one with `python -m app create-tenant EMAIL`)"
        )


def _all_tenants(connection: Connection) -> list[int]:
    rows = connection.execute(text("SELECT id FROM public.users ORDER BY id")).scalars()
    connection.commit()
    return [int(row) for row in rows]


def _migrate_schema(
    context: Any,
    connection: Connection,
    run: MigrationRun,
    metadata: MetaData,
    schema: str,
    scope: Scope,
    failures: dict[str, str],
) -> None:
    """Migrate one schema, retrying lock timeouts; record a failure instead of raising."""
    delay = BACKOFF_START_S
    for attempt in range(run.lock_retries + 1):
        started = time.monotonic()
        try:
            before, after = _migrate_once(context, connection, metadata, schema, scope, run)
        except DBAPIError as exc:
            connection.rollback()
            if _sqlstate(exc) != LOCK_NOT_AVAILABLE:
                log.error("migration.schema_failed", schema=schema, error=str(exc.orig))
                failures[schema] = _first_line(str(exc.orig))
                return
            blockers = _blocking_sessions(connection, schema)
            if attempt == run.lock_retries:
                log.error("migration.lock_timeout_gave_up", schema=schema, blockers=blockers)
                failures[schema] = f"lock timeout after {attempt + 1} attempt(s); blocked by " + (
                    ", ".join(blockers) or "a session that has since finished"
                )
                return
            wait = min(delay, BACKOFF_CAP_S) * random.uniform(0.8, 1.2)
            log.warning(
                "migration.lock_timeout_retry",
                schema=schema,
                attempt=attempt + 1,
                retry_in_s=round(wait, 2),
                blockers=blockers,
            )
            run.sleep(wait)
            delay *= 2
        except Exception as exc:  # any other failure stays in this schema's transaction
            connection.rollback()
            log.error("migration.schema_failed", schema=schema, error=repr(exc))
            failures[schema] = _first_line(f"{type(exc).__name__}: {exc}")
            return
        else:
            if before != after:
                log.info(
                    "migration.schema_done",
                    schema=schema,
                    from_revision=before,
                    to_revision=after,
                    seconds=round(time.monotonic() - started, 3),
                )
            return


def _migrate_once(
    context: Any,
    connection: Connection,
    metadata: MetaData,
    schema: str,
    scope: Scope,
    run: MigrationRun,
) -> tuple[str | None, str | None]:
    """One attempt, one transaction; returns the revision before and after."""
    version_table = run.version_table
    connection.info[SCOPE_KEY] = scope
    connection.info[DISCARD_BACKUPS_KEY] = run.discard_backups
    default_schema = connection.dialect.default_schema_name
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table_schema=schema,
        version_table=version_table,
        transaction_per_migration=False,
    )
    try:
        with context.begin_transaction():
            # Serialise concurrent migrators of the same schema (API creating a tenant while
            # an operator runs `alembic upgrade head`); released with the transaction.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"alembic:{schema}"}
            )
            if scope == "tenant":
                connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quoted_schema(schema)}"))
            connection.execute(text(f"SET LOCAL search_path TO {quoted_schema(schema)}"))
            connection.dialect.default_schema_name = schema
            before = _current_revision(connection, schema, version_table)
            if run.command == "current":
                # Alembic's own display gives a bare revision per schema: name the schema.
                heads = context.script.get_heads()
                mark = " (head)" if before in heads else ""
                context.config.print_stdout(f"{schema}: {before or 'none'}{mark}")
                return before, before
            context.run_migrations()
            after = _current_revision(connection, schema, version_table)
        return before, after
    finally:
        connection.dialect.default_schema_name = default_schema


def _current_revision(connection: Connection, schema: str, version_table: str) -> str | None:
    table = f"{quoted_schema(schema)}.{version_table}"
    exists = connection.execute(
        text("SELECT to_regclass(:name) IS NOT NULL"), {"name": table}
    ).scalar_one()
    if not exists:
        return None
    row = connection.execute(text(f"SELECT version_num FROM {table} LIMIT 1")).scalar()
    return str(row) if row is not None else None


def _blocking_sessions(connection: Connection, schema: str) -> list[str]:
    """Sessions holding locks on the schema's tables, from pg_locks and pg_stat_activity."""
    rows = connection.execute(
        text(
            """
            SELECT DISTINCT a.pid, a.usename, a.application_name, a.state,
                   now() - a.xact_start AS xact_age, left(a.query, 120) AS query
            FROM pg_locks l
            JOIN pg_class c ON c.oid = l.relation
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE n.nspname = :schema AND l.granted AND a.pid <> pg_backend_pid()
            ORDER BY a.pid
            """
        ),
        {"schema": schema},
    ).all()
    connection.rollback()
    return [
        f"pid {r.pid} ({r.usename}, {r.application_name or '-'}, {r.state}, "
        f"in transaction for {r.xact_age}, query: {r.query!r})"
        for r in rows
    ]


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None)


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


def _migrate_all(
    context: Any,
    connection: Connection,
    run: MigrationRun,
    metadata: MetaData,
    failures: dict[str, str],
) -> None:
    """Public first (its failure stops everything), then each tenant schema. Named tenants
    that do not exist are refused before anything is migrated."""
    checked = run.command == "upgrade" and not run.allow_unknown_tenants
    if run.touches_tenants and run.tenant_ids and checked:
        _refuse_unknown_tenants(connection, run.tenant_ids)
    if run.touches_public:
        _migrate_schema(context, connection, run, metadata, "public", "public", failures)
        if failures:
            raise TenantMigrationFailed(f"public schema not migrated: {failures['public']}")
    if run.touches_tenants:
        tenant_ids = run.tenant_ids or _all_tenants(connection)
        for index, tenant_id in enumerate(tenant_ids, start=1):
            schema = tenant_schema(tenant_id)
            structlog.contextvars.bind_contextvars(tenant=tenant_id)
            try:
                _migrate_schema(context, connection, run, metadata, schema, "tenant", failures)
            finally:
                structlog.contextvars.unbind_contextvars("tenant")
            if run.command in ("upgrade", "downgrade"):
                log.info("migration.progress", done=index, total=len(tenant_ids))
