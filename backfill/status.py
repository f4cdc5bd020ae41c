"""Per-tenant migration figures for `backfill status` (and later the operator console)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, text

from app.core.database import quoted_schema, tenant_schema
from backfill.tenants import has_images_column, is_ready


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

    @property
    def migrated_percent(self) -> float:
        """Table rows plus rejected elements over JSONB elements."""
        if not self.jsonb_images:
            return 100.0
        return min(100.0, 100.0 * (self.table_rows + self.rejected) / self.jsonb_images)


_JSONB_COUNT = (
    "(SELECT coalesce(sum(CASE jsonb_typeof(images) WHEN 'array' "
    "THEN jsonb_array_length(images) ELSE 1 END), 0) FROM {s}.products)"
)
_CONTRACTED_COUNT = (
    "((SELECT count(*) FROM {s}.product_images) "
    "+ (SELECT count(*) FROM {s}.rejected_image_elements))"
)

_STATUS_SQL = """
SELECT
  (SELECT count(*) FROM {s}.products) AS products,
  {jsonb_count} AS jsonb_images,
  (SELECT count(*) FROM {s}.product_images) AS table_rows,
  (SELECT count(*) FROM {s}.rejected_image_elements) AS rejected,
  (SELECT count(*) FROM {s}.product_images WHERE is_label) AS labels,
  (SELECT verified_at FROM {s}.image_migration_state WHERE id = 1) AS verified_at,
  r.status AS last_run_status,
  r.updated_at AS last_run_at,
  r.images_inserted / NULLIF(extract(epoch FROM r.updated_at - r.started_at), 0) AS last_run_rate
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
  SELECT * FROM {s}.backfill_runs ORDER BY id DESC LIMIT 1
) AS r ON true
"""


def tenant_status(engine: Engine, tenant_ids: Sequence[int]) -> list[TenantStatus]:
    """Counts and state of each (migrated) tenant."""
    statuses = []
    with engine.connect() as connection:
        for tenant_id in tenant_ids:
            if not is_ready(engine, tenant_id):
                continue
            schema = quoted_schema(tenant_schema(tenant_id))
            # Contracted: no JSONB any more; every element is a row or a rejection.
            count = _JSONB_COUNT if has_images_column(connection, schema) else _CONTRACTED_COUNT
            sql = _STATUS_SQL.format(s=schema, jsonb_count=count.format(s=schema))
            row = connection.execute(text(sql)).one()
            statuses.append(
                TenantStatus(
                    tenant_id=tenant_id,
                    products=int(row.products),
                    jsonb_images=int(row.jsonb_images),
                    table_rows=int(row.table_rows),
                    rejected=int(row.rejected),
                    labels=int(row.labels),
                    verified_at=row.verified_at,
                    last_run_status=row.last_run_status,
                    last_run_at=row.last_run_at,
                    last_run_rate=float(row.last_run_rate) if row.last_run_rate else None,
                )
            )
            # End the read transaction per tenant: one transaction over 1,000 schemas holds
            # an AccessShareLock on every table and index it read and runs out of
            # max_locks_per_transaction ("out of shared memory", bench/console_tenants.py).
            connection.rollback()
    return statuses
