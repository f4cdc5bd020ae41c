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

from app.repositories.migration_state import deferred, runs
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
    part: runs.KeyRange,
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
        runs.record_batch(
            connection,
            schema,
            part,
            ids=ids,
            checkpoint=new_checkpoint,
            inserted=inserted,
            rejected=rejected,
            size=size,
            lock_timeouts=result.lock_timeouts,
        )
        deferred.forget_deferred(connection, schema, ids)  # handled: no longer deferred
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


def defer_next(
    connection: Connection,
    schema: str,
    part: runs.KeyRange,
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
        deferred.defer(connection, schema, part, int(product_id), reason)
    return int(product_id)


def retry_deferred(
    connection: Connection,
    schema: str,
    part: runs.KeyRange,
    options: RunOptions,
    controls: Controls,
    result: TenantResult,
    log: structlog.stdlib.BoundLogger,
) -> None:
    """Come back for the range's products that were locked, with backoff; never skip one for
    good (each worker retries its own range's)."""
    delay = 0.2
    for _round in range(options.deferred_rounds):
        with connection.begin():
            pending = deferred.deferred_in(connection, schema, part)
        if not pending or controls.should_stop():
            break
        for product_id in pending:
            _batch_for(connection, schema, product_id, options, result)
        controls.sleep(delay)
        delay *= 2
    with connection.begin():
        result.deferred = deferred.count_deferred(connection, schema, part)
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
        deferred.forget_deferred(connection, schema, [product_id])
        transaction.commit()
    except DBAPIError as exc:
        transaction.rollback()
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            result.lock_timeouts += 1
            return
        if _is_refusal(exc):  # stays deferred, with the table's reason, for the operator
            with connection.begin():
                deferred.still_refused(connection, schema, product_id, _first_line(exc))
            return
        raise
    result.images_inserted += inserted
    result.rejected += rejected
