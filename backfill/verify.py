"""Verification across the shape change: the JSONB's normalised images against the table's
rows, per product, set-based, in one snapshot; the result is recorded per tenant.

The expected side is produced by the backfill's own projection SQL, run into temporary
tables that shadow `product_images` and `rejected_image_elements` (`pg_temp` first on the
search path), so there is one projection, not a second copy to keep in step.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

import structlog
from sqlalchemy import Connection, Engine, text

from app.core.database import quoted_schema, tenant_schema
from app.core.settings import get_settings
from app.images import IMAGE_KEYS, Image, row_to_image
from app.images.differences import Difference, classify
from app.repositories import migration_state
from backfill.projection import project_products, record_rejections
from backfill.tenants import is_contracted

log = structlog.get_logger("backfill.verify")

CHUNK = 20_000
MAX_DETAILED = 1_000

# One text per product: the array of its rows, in order, each row a record of every image
# key (timestamps in UTC). A record's text quotes a field that could be mistaken for a
# separator and leaves NULL empty (an empty string is ""), so two different image lists
# never give the same text (concat_ws skipped NULLs: (NULL, 500) and (500, NULL) collided).
# Built from IMAGE_KEYS, so a new key is fingerprinted without anyone remembering to.
_TIMESTAMPS = {"created_at", "updated_at"}
_FINGERPRINTED = ", ".join(
    f"{key} AT TIME ZONE 'UTC'" if key in _TIMESTAMPS else f'"{key}"' for key in IMAGE_KEYS
)
_FINGERPRINT = f"""
SELECT product_id,
       md5(array_agg(row({_FINGERPRINTED}) ORDER BY "order")::text) AS fingerprint
FROM {{table}}
{{where}}
GROUP BY product_id
"""


class TenantContracted(RuntimeError):
    """The tenant has no JSONB any more: verification has nothing to compare."""


@dataclass
class VerificationReport:
    """What verify found for one tenant."""

    tenant_id: int
    products: int = 0
    jsonb_elements: int = 0
    table_rows: int = 0
    expected_rows: int = 0
    rejected: int = 0
    rejected_unreported: int = 0
    labels: int = 0
    expected_labels: int = 0
    mismatched_products: int = 0
    mismatches: list[Difference] = field(default_factory=list)
    since: str | None = None
    seconds: float = 0.0
    # A drift (a write outside the dual-write, a restore) was recorded while this ran: the
    # comparison may be clean, but the tenant is not marked verified.
    raced_by_drift: bool = False

    @property
    def is_verified(self) -> bool:
        """Every element is a row or a reported rejection, every product matches, and no
        drift was recorded while the comparison ran."""
        return (
            not self.raced_by_drift
            and self.mismatched_products == 0
            and self.rejected_unreported == 0
            and self.jsonb_elements == self.expected_rows + self.rejected
            and (self.since is not None or self.table_rows == self.expected_rows)
        )

    def summary(self) -> dict[str, object]:
        """JSON-ready counts (stored with the verified state)."""
        data = asdict(self)
        data["mismatches"] = [asdict(m) for m in self.mismatches[:20]]
        data["is_verified"] = self.is_verified
        return data


def verify_tenant(
    engine: Engine, tenant_id: int, *, since: str | None = None
) -> VerificationReport:
    """Compare both representations of every product (or those updated since a time)."""
    started = time.monotonic()
    schema = quoted_schema(tenant_schema(tenant_id))
    report = VerificationReport(tenant_id=tenant_id, since=since)
    if is_contracted(engine, tenant_id):
        raise TenantContracted(
            f"tenant {tenant_id} is contracted: products.images is gone, nothing to compare"
        )
    with engine.connect() as connection:
        connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        # The first read takes the snapshot: the generation it sees is what marking the
        # tenant verified compares against (migration_state.mark_verified).
        seen_generation = migration_state.drift_generation(connection, schema)
        _expected_into_temp_tables(connection, schema, since)
        _count(connection, schema, report, since)
        _compare(connection, schema, report)
        connection.rollback()  # the temp tables go with it
    report.seconds = time.monotonic() - started
    _record(engine, schema, report, seen_generation)
    log.info(
        "verify.done",
        tenant=tenant_id,
        verified=report.is_verified,
        mismatched_products=report.mismatched_products,
        seconds=round(report.seconds, 3),
    )
    return report


def compare_into_report(connection: Connection, schema: str, report: VerificationReport) -> None:
    """The comparison (of the products updated since `report.since`, or all) inside the
    caller's transaction (the contract's guard), leaving no temporary table behind and the
    search path on the tenant's schema."""
    _expected_into_temp_tables(connection, schema, report.since)
    _count(connection, schema, report, report.since)
    _compare(connection, schema, report)
    connection.execute(text("DROP TABLE pg_temp.product_images, pg_temp.rejected_image_elements"))
    connection.execute(text(f"SET LOCAL search_path TO {schema}"))


def _scope(schema: str, since: str | None) -> str:
    """The products a `--since` pass compares: updated since then, or written outside the
    dual-write since then (a bypassing writer may leave updated_at alone; the safety net's
    log has them)."""
    if not since:
        return ""
    return (
        "WHERE (updated_at >= CAST(:since AS timestamptz) OR id IN (SELECT product_id "
        f"FROM {schema}.changed_products WHERE changed_at >= CAST(:since AS timestamptz)))"
    )


def _expected_into_temp_tables(connection: Connection, schema: str, since: str | None) -> None:
    connection.execute(
        text(f"CREATE TEMP TABLE product_images (LIKE {schema}.product_images) ON COMMIT DROP")
    )
    connection.execute(
        text(
            f"CREATE TEMP TABLE rejected_image_elements (LIKE {schema}.rejected_image_elements "
            "INCLUDING DEFAULTS INCLUDING IDENTITY) ON COMMIT DROP"
        )
    )
    connection.execute(
        text("CREATE UNIQUE INDEX ON pg_temp.rejected_image_elements (product_id, position)")
    )
    # pg_temp first: the projection's unqualified table names now mean the temporary copies.
    connection.execute(text(f"SET LOCAL search_path TO pg_temp, {schema}, public"))
    legacy_sources = get_settings().legacy_sources
    after = 0
    params = {"since": since} if since else {}
    while True:
        ids = list(
            connection.execute(
                text(
                    f"SELECT id FROM {schema}.products "
                    f"{_scope(schema, since) or 'WHERE true'} AND id > :after ORDER BY id LIMIT :n"
                ),
                {**params, "after": after, "n": CHUNK},
            ).scalars()
        )
        if not ids:
            break
        project_products(connection, ids, legacy_sources)
        record_rejections(connection, ids, "verify")
        after = ids[-1]


def _count(
    connection: Connection, schema: str, report: VerificationReport, since: str | None
) -> None:
    params = {"since": since} if since else {}
    in_scope = f"product_id IN (SELECT id FROM {schema}.products {_scope(schema, since)})"
    row = connection.execute(
        text(
            f"""
            SELECT
              (SELECT count(*) FROM {schema}.products {_scope(schema, since)}) AS products,
              (SELECT coalesce(sum(CASE jsonb_typeof(images)
                                     WHEN 'array' THEN jsonb_array_length(images) ELSE 1 END), 0)
                 FROM {schema}.products {_scope(schema, since)}) AS jsonb_elements,
              (SELECT count(*) FROM {schema}.product_images WHERE {in_scope}) AS table_rows,
              (SELECT count(*) FROM {schema}.product_images WHERE {in_scope} AND is_label)
                AS labels,
              (SELECT count(*) FROM pg_temp.product_images) AS expected_rows,
              (SELECT count(*) FROM pg_temp.product_images WHERE is_label) AS expected_labels,
              (SELECT count(*) FROM pg_temp.rejected_image_elements) AS rejected,
              (SELECT count(*) FROM pg_temp.rejected_image_elements e
                WHERE NOT EXISTS (SELECT 1 FROM {schema}.rejected_image_elements r
                                  WHERE r.product_id = e.product_id AND r.position = e.position
                                    AND r.reason = e.reason)) AS rejected_unreported
            """
        ),
        params,
    ).one()
    for name in (
        "products",
        "jsonb_elements",
        "table_rows",
        "labels",
        "expected_rows",
        "expected_labels",
        "rejected",
        "rejected_unreported",
    ):
        setattr(report, name, int(getattr(row, name)))


def _compare(connection: Connection, schema: str, report: VerificationReport) -> None:
    mismatched = _mismatched(connection, schema, report.since)
    report.mismatched_products = len(mismatched)
    for product_id in mismatched[:MAX_DETAILED]:
        report.mismatches.extend(
            classify(
                product_id,
                _images(connection, "pg_temp.product_images", product_id),
                _images(connection, f"{schema}.product_images", product_id),
            )
        )


def _mismatched(connection: Connection, schema: str, since: str | None) -> list[int]:
    """Products whose ordered fingerprints differ, or that exist on one side only (the
    temporary tables hold the expected side)."""
    expected = _FINGERPRINT.format(table="pg_temp.product_images", where="")
    where = (
        f"WHERE product_id IN (SELECT id FROM {schema}.products {_scope(schema, since)})"
        if since
        else ""
    )
    actual = _FINGERPRINT.format(table=f"{schema}.product_images", where=where)
    return list(
        connection.execute(
            text(
                f"""
                WITH e AS ({expected}), a AS ({actual})
                SELECT coalesce(e.product_id, a.product_id) AS product_id
                FROM e FULL JOIN a USING (product_id)
                WHERE e.fingerprint IS DISTINCT FROM a.fingerprint
                ORDER BY 1
                """
            ),
            {"since": since} if since else {},
        ).scalars()
    )


def differing_products(engine: Engine, tenant_id: int, *, since: str | None = None) -> list[int]:
    """Every product whose rows differ from its JSONB's projection or whose rejected
    elements are not all in the report, in one REPEATABLE READ snapshot (what `backfill
    repair` rebuilds; nothing is written)."""
    schema = quoted_schema(tenant_schema(tenant_id))
    with engine.connect() as connection:
        connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        _expected_into_temp_tables(connection, schema, since)
        differing = set(_mismatched(connection, schema, since))
        differing.update(
            connection.execute(
                text(
                    "SELECT DISTINCT e.product_id FROM pg_temp.rejected_image_elements AS e "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {schema}.rejected_image_elements AS r "
                    "WHERE r.product_id = e.product_id AND r.position = e.position "
                    "AND r.reason = e.reason)"
                )
            ).scalars()
        )
        connection.rollback()
    return sorted(differing)


def _images(connection: Connection, table: str, product_id: int) -> list[Image]:
    rows = connection.execute(
        text(f'SELECT * FROM {table} WHERE product_id = :id ORDER BY "order"'), {"id": product_id}
    ).mappings()
    return [row_to_image(dict(row)) for row in rows]


def _record(engine: Engine, schema: str, report: VerificationReport, seen_generation: int) -> None:
    """Store the result: a full clean pass verifies, unless a drift was recorded since its
    snapshot (compare-and-set); any difference is drift."""
    summary = json.dumps(report.summary(), default=str)
    with engine.begin() as connection:
        if report.is_verified and report.since is None:
            if not migration_state.mark_verified(
                connection, schema, seen_generation=seen_generation, summary=summary
            ):
                report.raced_by_drift = True
                log.warning("verify.raced_by_drift", tenant=report.tenant_id)
        elif not report.is_verified:
            migration_state.record_failed_verification(connection, schema, summary)


def verified_at(engine: Engine, tenant_id: int) -> datetime | None:
    """When the tenant was last verified clean (None: not verified)."""
    schema = quoted_schema(tenant_schema(tenant_id))
    with engine.connect() as connection:
        value = connection.execute(
            text(f"SELECT verified_at FROM {schema}.image_migration_state WHERE id = 1")
        ).scalar()
    return value if isinstance(value, datetime) else None
