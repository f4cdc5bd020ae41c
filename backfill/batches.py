"""One batch of a backfill range, in one transaction: its products locked `FOR UPDATE`, the
projection for those with no rows yet, the rejections, and the range's checkpoint, committed
together; a product that stays locked (or that the table refuses) deferred, and the range's
deferred products tried again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from backfill import ranges
from backfill.pacing import Controls
from backfill.projection import project_products, record_rejections

if TYPE_CHECKING:  # the runner's types; the runner imports this module
    from backfill.runner import RunOptions, TenantResult

LOCK_NOT_AVAILABLE = "55P03"


class ProductsRefused(RuntimeError):
    """The table refused a batch's images (a data or integrity error, e.g. an image id that
    another product's row already has): the products are tried one by one."""


def batch_after(
    connection: Connection,
    schema: str,
    part: ranges.KeyRange,
    checkpoint: int,
    size: int,
    options: RunOptions,
    result: TenantResult,
) -> tuple[int, int, int] | None:
    """One batch of the range in one transaction; None when its row locks timed out."""
    transaction = connection.begin()
    try:
        _prepare(connection, schema, options)
        ids = list(
            connection.execute(
                text(
                    f"SELECT id FROM {schema}.products WHERE id > :checkpoint "
                    "AND id <= :last ORDER BY id LIMIT :size FOR UPDATE"
                ),
                {"checkpoint": checkpoint, "last": part.last_id, "size": size},
            ).scalars()
        )
        if not ids:
            transaction.rollback()
            return 0, 0, checkpoint
        inserted, rejected = _migrate(connection, ids, options)
        new_checkpoint = ids[-1]
        _record_batch(
            connection, schema, part, result, ids, new_checkpoint, inserted, rejected, size
        )
        if options.dry_run:
            transaction.rollback()  # a dry run measures everything and keeps nothing
        else:
            transaction.commit()
    except DBAPIError as exc:
        transaction.rollback()
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return None
        if _is_refusal(exc):
            raise ProductsRefused(_first_line(exc)) from exc
        raise
    except BaseException:
        transaction.rollback()
        raise
    result.products_scanned += len(ids)
    result.images_inserted += inserted
    result.rejected += rejected
    result.batches += 1
    return len(ids), inserted, new_checkpoint


def _prepare(connection: Connection, schema: str, options: RunOptions) -> None:
    connection.execute(text(f"SET LOCAL lock_timeout = '{int(options.lock_timeout_ms)}ms'"))
    # The projection SQL names tenant tables unqualified; this transaction reads this schema.
    connection.execute(text(f"SET LOCAL search_path TO {schema}, public"))
    connection.execute(text("SET CONSTRAINTS ALL DEFERRED"))


def _is_refusal(exc: DBAPIError) -> bool:
    """A data exception (class 22) or an integrity violation (class 23): what this product's
    JSONB asks of the table cannot be stored; retrying the same batch cannot help."""
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return sqlstate[:2] in ("22", "23")


def _first_line(exc: DBAPIError) -> str:
    return (str(exc.orig) if exc.orig is not None else str(exc)).splitlines()[0]


def _migrate(connection: Connection, ids: Sequence[int], options: RunOptions) -> tuple[int, int]:
    inserted = project_products(connection, ids, options.legacy_sources)
    rejected = record_rejections(connection, ids, "backfill")
    return inserted, rejected


def _record_batch(
    connection: Connection,
    schema: str,
    part: ranges.KeyRange,
    result: TenantResult,
    ids: Sequence[int],
    checkpoint: int,
    inserted: int,
    rejected: int,
    size: int,
) -> None:
    # Committed with the batch's rows: after a crash, the checkpoint never runs ahead of them.
    # The range's row only (its worker's alone): the run row is rolled up outside the batch,
    # so two workers' batches never wait for each other on it.
    connection.execute(
        text(
            f"UPDATE {schema}.backfill_ranges SET checkpoint = :checkpoint, "
            "products_scanned = products_scanned + :scanned, "
            "images_inserted = images_inserted + :inserted, rejected = rejected + :rejected, "
            "batches = batches + 1, batch_size = :size, lock_timeouts = :lock_timeouts, "
            "updated_at = now() WHERE run_id = :run AND range_no = :no"
        ),
        {
            "checkpoint": checkpoint,
            "scanned": len(ids),
            "inserted": inserted,
            "rejected": rejected,
            "size": size,
            "lock_timeouts": result.lock_timeouts,
            "run": part.run_id,
            "no": part.range_no,
        },
    )
    connection.execute(
        text(f"DELETE FROM {schema}.backfill_deferred WHERE product_id = ANY(:ids)"),
        {"ids": list(ids)},
    )


def defer_next(
    connection: Connection,
    schema: str,
    part: ranges.KeyRange,
    checkpoint: int,
    result: TenantResult,
    reason: str,
) -> int:
    """A single product that stays locked (or that the table refuses): note it, with why,
    for a later retry and move past it."""
    with connection.begin():
        product_id = connection.execute(
            text(f"SELECT min(id) FROM {schema}.products WHERE id > :checkpoint AND id <= :last"),
            {"checkpoint": checkpoint, "last": part.last_id},
        ).scalar_one()
        if product_id is None:
            return checkpoint
        connection.execute(
            text(
                f"INSERT INTO {schema}.backfill_deferred (product_id, reason) "
                "VALUES (:id, :reason) ON CONFLICT (product_id) "
                "DO UPDATE SET attempts = backfill_deferred.attempts + 1, deferred_at = now(), "
                "reason = EXCLUDED.reason"
            ),
            {"id": product_id, "reason": reason},
        )
        connection.execute(
            text(
                f"UPDATE {schema}.backfill_ranges SET checkpoint = :checkpoint, "
                "deferred = deferred + 1, updated_at = now() "
                "WHERE run_id = :run AND range_no = :no"
            ),
            {"checkpoint": product_id, "run": part.run_id, "no": part.range_no},
        )
    return int(product_id)


def retry_deferred(
    connection: Connection,
    schema: str,
    part: ranges.KeyRange,
    options: RunOptions,
    controls: Controls,
    result: TenantResult,
    log: structlog.stdlib.BoundLogger,
) -> None:
    """Come back for the range's products that were locked, with backoff; never skip one for
    good (each worker retries its own range's)."""
    delay = 0.2
    in_range = "product_id > :lower AND product_id <= :last"
    bounds = {"lower": part.lower, "last": part.last_id}
    for _round in range(options.deferred_rounds):
        with connection.begin():
            pending = list(
                connection.execute(
                    text(
                        f"SELECT product_id FROM {schema}.backfill_deferred "
                        f"WHERE {in_range} ORDER BY product_id"
                    ),
                    bounds,
                ).scalars()
            )
        if not pending or controls.should_stop():
            break
        for product_id in pending:
            _batch_for(connection, schema, product_id, options, result)
        controls.sleep(delay)
        delay *= 2
    with connection.begin():
        result.deferred = int(
            connection.execute(
                text(f"SELECT count(*) FROM {schema}.backfill_deferred WHERE {in_range}"),
                bounds,
            ).scalar_one()
        )
    if result.deferred:
        log.warning("backfill.still_deferred", products=result.deferred)


def _batch_for(
    connection: Connection, schema: str, product_id: int, options: RunOptions, result: TenantResult
) -> None:
    transaction = connection.begin()
    try:
        _prepare(connection, schema, options)
        locked = connection.execute(
            text(f"SELECT id FROM {schema}.products WHERE id = :id FOR UPDATE"), {"id": product_id}
        ).scalar()
        inserted, rejected = _migrate(connection, [product_id], options) if locked else (0, 0)
        connection.execute(
            text(f"DELETE FROM {schema}.backfill_deferred WHERE product_id = :id"),
            {"id": product_id},
        )
        transaction.commit()
    except DBAPIError as exc:
        transaction.rollback()
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            result.lock_timeouts += 1
            return
        if _is_refusal(exc):  # stays deferred, with the table's reason, for the operator
            with connection.begin():
                connection.execute(
                    text(
                        f"UPDATE {schema}.backfill_deferred SET reason = :reason, "
                        "attempts = attempts + 1, deferred_at = now() WHERE product_id = :id"
                    ),
                    {"reason": _first_line(exc), "id": product_id},
                )
            return
        raise
    result.images_inserted += inserted
    result.rejected += rejected
