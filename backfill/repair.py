"""`backfill repair`: rebuild drifted products' rows from their JSONB, the source of truth
while the column exists (the dual-write keeps both equal; every drift — the kill switch, a
write outside the service, a restore — changed the JSONB, not the rows).

Which products: the given ones, or every product whose rows differ from its JSONB's
projection (verify's own comparison, in one snapshot) plus every product the safety net
logged as written outside the dual-write. Each batch is one transaction under the batch's
row locks: the rows are deleted and projected again by the backfill's SQL, the rejection
report completed, and the products' log entries dropped. Nothing is marked verified: run
`backfill verify` afterwards (it may, if nothing drifted meanwhile)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from app.core.database import quoted_schema, tenant_schema
from app.repositories import migration_state
from backfill.projection import project_products, record_rejections
from backfill.tenants import is_contracted
from backfill.verify import TenantContracted, differing_products

log = structlog.get_logger("backfill.repair")

BATCH = 500


class UnknownProducts(ValueError):
    """--product named products the tenant does not have."""

    field = "product"


@dataclass
class RepairResult:
    """What one tenant's repair did."""

    tenant_id: int
    products: list[int] = field(default_factory=list)  # the products rebuilt
    rows_before: int = 0
    rows_after: int = 0
    rejected_recorded: int = 0
    failed: dict[int, str] = field(default_factory=dict)  # product -> why it was not rebuilt
    seconds: float = 0.0


def products_to_repair(engine: Engine, tenant_id: int) -> list[int]:
    """The drifted products: rows differing from the JSONB, or logged by the safety net."""
    schema = quoted_schema(tenant_schema(tenant_id))
    differing = set(differing_products(engine, tenant_id))
    with engine.connect() as connection:
        logged = migration_state.changed_products(connection, schema)
    return sorted(differing | {entry.product_id for entry in logged})


def repair_tenant(
    engine: Engine,
    tenant_id: int,
    *,
    legacy_sources: Sequence[str],
    product_ids: Sequence[int] | None = None,
    batch: int = BATCH,
    lock_timeout_ms: int = 2_000,
    progress: Callable[[int], None] | None = None,
) -> RepairResult:
    """Rebuild the rows of the given products (default: the drifted ones) from their JSONB."""
    started = time.monotonic()
    schema = quoted_schema(tenant_schema(tenant_id))
    bound = log.bind(tenant=tenant_id, stage="repair")
    if is_contracted(engine, tenant_id):
        raise TenantContracted(
            f"tenant {tenant_id} is contracted: products.images is gone, the table is all there "
            "is (uncontract first to repair from a JSONB)"
        )
    if product_ids is not None:
        _check_known(engine, schema, tenant_id, product_ids)
        todo = sorted(set(product_ids))
    else:
        todo = products_to_repair(engine, tenant_id)
    result = RepairResult(tenant_id)
    bound.info("repair.started", products=len(todo))
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        try:
            _rebuild(engine, schema, chunk, legacy_sources, lock_timeout_ms, result)
        except IntegrityError:
            # One product's JSONB the table cannot take (e.g. an id carried over from another
            # product by a writer outside the service): the others still get rebuilt, and
            # that one is reported with the database's reason.
            for product_id in chunk:
                try:
                    _rebuild(engine, schema, [product_id], legacy_sources, lock_timeout_ms, result)
                except IntegrityError as exc:
                    reason = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
                    result.failed[product_id] = reason
                    bound.error("repair.product_failed", product=product_id, error=reason)
        if progress is not None:
            progress(len(chunk))
    result.seconds = time.monotonic() - started
    bound.info(
        "repair.done",
        products=len(result.products),
        rows_before=result.rows_before,
        rows_after=result.rows_after,
        seconds=round(result.seconds, 3),
    )
    return result


def _rebuild(
    engine: Engine,
    schema: str,
    product_ids: Sequence[int],
    legacy_sources: Sequence[str],
    lock_timeout_ms: int,
    result: RepairResult,
) -> None:
    """One transaction: lock the products, drop their rows, project them again from the
    JSONB, complete the rejection report, drop their changed-products entries."""
    with engine.begin() as connection:
        connection.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'"))
        connection.execute(text(f"SET LOCAL search_path TO {schema}, public"))
        locked = list(
            connection.execute(
                text("SELECT id FROM products WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"),
                {"ids": list(product_ids)},
            ).scalars()
        )
        before = connection.execute(
            text("DELETE FROM product_images WHERE product_id = ANY(:ids)"), {"ids": locked}
        ).rowcount
        after = project_products(connection, locked, legacy_sources)
        rejected = record_rejections(connection, locked, "repair")
        migration_state.forget_changes(connection, schema, locked)
    result.rows_before += int(before)
    result.rows_after += after
    result.rejected_recorded += rejected
    result.products.extend(locked)


def _check_known(engine: Engine, schema: str, tenant_id: int, product_ids: Sequence[int]) -> None:
    with engine.connect() as connection:
        known = set(
            connection.execute(
                text(f"SELECT id FROM {schema}.products WHERE id = ANY(:ids)"),
                {"ids": list(product_ids)},
            ).scalars()
        )
    unknown = sorted(set(product_ids) - known)
    if unknown:
        raise UnknownProducts(f"tenant {tenant_id} has no product {', '.join(map(str, unknown))}")
