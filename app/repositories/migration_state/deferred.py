"""Deferred products (`backfill_deferred`): a product whose row lock a batch could not take
in time (or that the table refused) is noted with why, the range moves past it, and its
worker comes back for it; it never stays skipped without a row here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Result, text

from app.repositories.migration_state.runs import KeyRange


def defer(
    connection: Connection, schema: str, part: KeyRange, product_id: int, reason: str
) -> None:
    """Note a product that stays locked (or that the table refuses), with why, and move the
    range's checkpoint past it, in the caller's transaction."""
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


def _in_range(connection: Connection, schema: str, part: KeyRange, select: str) -> Result[Any]:
    return connection.execute(
        text(
            f"SELECT {select} FROM {schema}.backfill_deferred "
            "WHERE product_id > :lower AND product_id <= :last"
        ),
        {"lower": part.lower, "last": part.last_id},
    )


def deferred_in(connection: Connection, schema: str, part: KeyRange) -> list[int]:
    """The range's deferred products, in key order."""
    return sorted(int(i) for i in _in_range(connection, schema, part, "product_id").scalars())


def count_deferred(connection: Connection, schema: str, part: KeyRange) -> int:
    """How many of the range's products are still deferred."""
    return int(_in_range(connection, schema, part, "count(*)").scalar_one())


def forget_deferred(connection: Connection, schema: str, product_ids: Sequence[int]) -> None:
    """These products are handled: no longer deferred."""
    connection.execute(
        text(f"DELETE FROM {schema}.backfill_deferred WHERE product_id = ANY(:ids)"),
        {"ids": list(product_ids)},
    )


def still_refused(connection: Connection, schema: str, product_id: int, reason: str) -> None:
    """A deferred product the table refused again: it stays deferred, with the table's
    reason, for the operator."""
    connection.execute(
        text(
            f"UPDATE {schema}.backfill_deferred SET reason = :reason, "
            "attempts = attempts + 1, deferred_at = now() WHERE product_id = :id"
        ),
        {"reason": reason, "id": product_id},
    )
