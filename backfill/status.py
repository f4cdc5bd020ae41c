"""Per-tenant migration figures for `backfill status`, the admin API and the operator
console: a handful of statements for any number of tenants, not a few per tenant."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg.errors
import structlog
from sqlalchemy import Connection, Engine, Row, text
from sqlalchemy.exc import ProgrammingError

from app.core.database import quoted_schema, tenant_schema
from backfill.tenants import BACKFILL_TABLES
from flags.stages import TenantFacts

log = structlog.get_logger("backfill.status")

# Tenants read per statement (and per transaction). Each tenant's branch locks its tables
# and their indexes (about 20 locks): 25 tenants stay far below max_locks_per_transaction
# times max_connections, and one statement per 25 tenants instead of several per tenant is
# what makes 1,000 tenants a fraction of a second (docs/benchmarks.md).
PAGE = 25
# A contract or a downgrade can land between the catalog read and the page's statement.
_RETRIES = 3


@dataclass(frozen=True)
class TenantStatus:
    """One tenant's counts and state."""

    tenant_id: int
    products: int
    jsonb_images: int
    table_rows: int
    rejected: int
    labels: int
    verified_at: datetime | None
    last_run_status: str | None
    last_run_at: datetime | None
    last_run_rate: float | None
    is_contracted: bool = False
    is_backfilled: bool = False
    mismatches_last_hour: int = 0

    @property
    def migrated_percent(self) -> float:
        """Table rows plus rejected elements over JSONB elements."""
        if not self.jsonb_images:
            return 100.0
        return min(100.0, 100.0 * (self.table_rows + self.rejected) / self.jsonb_images)

    @property
    def facts(self) -> TenantFacts:
        """What `flags.stages.resolve` needs, as `tenant_facts(session)` reads it one tenant
        at a time (tests/backfill/test_status.py holds the two to the same answers)."""
        return TenantFacts(
            has_table=True,
            is_contracted=self.is_contracted,
            is_backfilled=self.is_backfilled,
            is_verified=self.verified_at is not None,
        )


@dataclass(frozen=True)
class SchemaState:
    """What the catalog says about one tenant schema."""

    tenant_id: int
    ready: bool
    has_images_column: bool
    has_mismatches: bool


# to_regclass is a cache lookup per name: a catalog join over 1,000 schemas (50,000
# pg_class rows) can take the planner's worst path while the catalog's statistics lag.
_CATALOG_SQL = f"""
SELECT s AS schema,
  {" AND ".join(f"to_regclass(format('%I.{t}', s)) IS NOT NULL" for t in BACKFILL_TABLES)}
    AS ready,
  to_regclass(format('%I.shadow_mismatches', s)) IS NOT NULL AS has_mismatches,
  EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(format('%I.products', s))
    AND attname = 'images' AND NOT attisdropped) AS has_images_column
FROM unnest(CAST(:schemas AS text[])) AS s
"""

# Each table is read once per tenant; {jsonb_count} sums the JSONB elements, or is NULL
# once the tenant is contracted and the column gone: the contract's guard required the
# JSONB to be canonical (exactly what the table rebuilds; rejected elements were left in
# the canonicalize backup), so the column held one element per table row.
_JSONB_COUNT = (
    "coalesce(sum(CASE jsonb_typeof(images) WHEN 'array' "
    "THEN jsonb_array_length(images) ELSE 1 END), 0)"
)
_CONTRACTED_COUNT = "NULL::bigint"
_MISMATCHES = (
    "(SELECT count(*) FROM {s}.shadow_mismatches WHERE found_at > now() - interval '1 hour')"
)

# One tenant's branch of the page's UNION ALL; {tenant} and {contracted} are literals the
# code wrote (an int and a bool), {s} a quoted schema name.
_STATUS_SQL = """
SELECT
  {tenant} AS tenant_id,
  {contracted} AS is_contracted,
  p.products,
  coalesce(p.jsonb_images, i.table_rows) AS jsonb_images,
  i.table_rows,
  j.rejected,
  i.labels,
  (SELECT verified_at FROM {s}.image_migration_state WHERE id = 1) AS verified_at,
  EXISTS (SELECT 1 FROM {s}.backfill_runs WHERE status = 'done') AS is_backfilled,
  {mismatches} AS mismatches_last_hour,
  r.status AS last_run_status,
  r.updated_at AS last_run_at,
  r.images_inserted / NULLIF(extract(epoch FROM r.updated_at - r.started_at), 0) AS last_run_rate
FROM (SELECT count(*) AS products, {jsonb_count} AS jsonb_images FROM {s}.products) AS p
CROSS JOIN (
  SELECT count(*) AS table_rows, count(*) FILTER (WHERE is_label) AS labels
  FROM {s}.product_images
) AS i
CROSS JOIN (SELECT count(*) AS rejected FROM {s}.rejected_image_elements) AS j
LEFT JOIN LATERAL (
  SELECT * FROM {s}.backfill_runs ORDER BY id DESC LIMIT 1
) AS r ON true
"""


def tenant_status(engine: Engine, tenant_ids: Sequence[int]) -> list[TenantStatus]:
    """Counts and state of each migrated tenant among those given, in their order (tenants
    whose schema is not at head are left out)."""
    found: dict[int, TenantStatus] = {}
    with engine.connect() as connection:
        schemas = schema_catalog(connection, tenant_ids)
        connection.rollback()
        for page in _pages([s for s in schemas if s.ready]):
            for status in _read_page(connection, page):
                found[status.tenant_id] = status
    return [found[t] for t in tenant_ids if t in found]


def _pages(schemas: list[SchemaState]) -> Iterator[list[SchemaState]]:
    for start in range(0, len(schemas), PAGE):
        yield schemas[start : start + PAGE]


def _read_page(connection: Connection, schemas: list[SchemaState]) -> list[TenantStatus]:
    for attempt in range(1, _RETRIES + 1):
        try:
            return [_status(row) for row in _page_rows(connection, schemas)]
        except ProgrammingError as exc:
            if attempt == _RETRIES or not isinstance(
                exc.orig, psycopg.errors.UndefinedColumn | psycopg.errors.UndefinedTable
            ):
                raise
            # A tenant was contracted or downgraded since the catalog read: read it again.
            log.info(
                "status.schema_changed",
                tenants=[s.tenant_id for s in schemas],
                error=str(exc.orig),
            )
            connection.rollback()
            again = schema_catalog(connection, [s.tenant_id for s in schemas])
            schemas = [s for s in again if s.ready]
        finally:
            # End the read transaction per page: one transaction over 1,000 schemas holds an
            # AccessShareLock on every table and index it read and runs out of
            # max_locks_per_transaction ("out of shared memory", bench/console_tenants.py).
            connection.rollback()
    raise AssertionError("unreachable")  # pragma: no cover


def schema_catalog(connection: Connection, tenant_ids: Sequence[int]) -> list[SchemaState]:
    """One catalog read for many schemas: at head? still has products.images?"""
    by_schema = {tenant_schema(t): t for t in tenant_ids}
    rows = connection.execute(text(_CATALOG_SQL), {"schemas": list(by_schema)}).all()
    return [
        SchemaState(
            tenant_id=by_schema[row.schema],
            ready=bool(row.ready),
            has_images_column=bool(row.has_images_column),
            has_mismatches=bool(row.has_mismatches),
        )
        for row in rows
    ]


def _page_rows(connection: Connection, schemas: Sequence[SchemaState]) -> list[Row[Any]]:
    if not schemas:
        return []
    branches = []
    for schema in schemas:
        s = quoted_schema(tenant_schema(schema.tenant_id))
        # Contracted: no JSONB any more; its count is the table's rows (see _JSONB_COUNT).
        count = _JSONB_COUNT if schema.has_images_column else _CONTRACTED_COUNT
        branches.append(
            _STATUS_SQL.format(
                tenant=int(schema.tenant_id),
                contracted="false" if schema.has_images_column else "true",
                s=s,
                jsonb_count=count,
                mismatches=_MISMATCHES.format(s=s) if schema.has_mismatches else "0",
            )
        )
    return list(connection.execute(text("\nUNION ALL\n".join(branches))).all())


def _status(row: Row[Any]) -> TenantStatus:
    return TenantStatus(
        tenant_id=int(row.tenant_id),
        products=int(row.products),
        jsonb_images=int(row.jsonb_images),
        table_rows=int(row.table_rows),
        rejected=int(row.rejected),
        labels=int(row.labels),
        verified_at=row.verified_at,
        last_run_status=row.last_run_status,
        last_run_at=row.last_run_at,
        last_run_rate=float(row.last_run_rate) if row.last_run_rate else None,
        is_contracted=bool(row.is_contracted),
        is_backfilled=bool(row.is_backfilled),
        mismatches_last_hour=int(row.mismatches_last_hour),
    )


@dataclass(frozen=True)
class RejectedElement:
    """One JSONB element the table could not hold, with the projection's reason."""

    tenant_id: int
    product_id: int
    position: int
    reason: str
    detail: str
    raw: str


def rejected_elements(
    engine: Engine, tenant_ids: Sequence[int], *, limit: int = 200
) -> tuple[dict[tuple[int, str], int], list[RejectedElement]]:
    """Per tenant and reason, how many elements were rejected; then the first `limit` of
    them (tenant, product, position order), the raw element cut to 200 characters."""
    counts: dict[tuple[int, str], int] = {}
    listed: list[RejectedElement] = []
    with engine.connect() as connection:
        for tenant_id in tenant_ids:
            schema = quoted_schema(tenant_schema(tenant_id))
            for reason, n in connection.execute(
                text(
                    f"SELECT reason, count(*) FROM {schema}.rejected_image_elements "
                    "GROUP BY reason ORDER BY reason"
                )
            ).all():
                counts[(tenant_id, str(reason))] = int(n)
            if len(listed) < limit:
                rows = connection.execute(
                    text(
                        "SELECT product_id, position, reason, detail, left(raw::text, 200) AS raw "
                        f"FROM {schema}.rejected_image_elements ORDER BY product_id, position "
                        "LIMIT :n"
                    ),
                    {"n": limit - len(listed)},
                )
                listed += [
                    RejectedElement(tenant_id, r.product_id, r.position, r.reason, r.detail, r.raw)
                    for r in rows
                ]
            connection.rollback()  # per tenant: 1,000 schemas in one transaction run out of locks
    return counts, listed
