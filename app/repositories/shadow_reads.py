"""What a shadow read needs from the database: both representations of a product in one
statement (one snapshot), the bounded mismatch sample, and the tenant's verified state."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, delete, func, insert, literal, select, text

from app.core.database import TenantSession
from app.images import Image, image_to_element, row_to_image
from app.images.differences import Difference
from app.models import Product, ProductImage, ShadowMismatch
from app.repositories import migration_state

_products: Table = Product.__table__  # type: ignore[assignment]
_images: Table = ProductImage.__table__  # type: ignore[assignment]
_mismatches: Table = ShadowMismatch.__table__  # type: ignore[assignment]

# The sample keeps the latest mismatches per tenant; one product's same kind of mismatch is
# recorded at most once a minute (counters and logs still see every occurrence).
SAMPLE_SIZE = 100
_REPEAT_WINDOW = "1 minute"


@dataclass(frozen=True)
class BothRepresentations:
    """A product's JSONB column and its table rows, read in the same snapshot."""

    product_id: int
    raw_jsonb: object
    created_at: datetime
    source: str | None
    rows: tuple[Image, ...]


@dataclass(frozen=True)
class SampledMismatch:
    """One row of the sample."""

    product_id: int
    kind: str
    detail: str
    read_path: str
    found_at: datetime


def read_both(
    session: TenantSession, product_id: int, *, with_jsonb: bool = True
) -> BothRepresentations | None:
    """One statement, hence one snapshot even at READ COMMITTED: a write committed between
    two separate reads cannot show up as a false mismatch. None: no such product.
    `with_jsonb=False` for a contracted tenant (no column: `raw_jsonb` is None)."""
    jsonb = _products.c.images if with_jsonb else literal(None).label("images")
    statement = (
        select(jsonb, _products.c.created_at, _products.c.source, _images)
        .select_from(_products.outerjoin(_images, _images.c.product_id == _products.c.id))
        .where(_products.c.id == product_id)
        .order_by(_images.c.order)
    )
    found = session.execute(statement).mappings().all()
    if not found:
        return None
    first = found[0]
    rows = tuple(
        row_to_image({c.name: row[c] for c in _images.columns})
        for row in found
        if row[_images.c.id] is not None
    )
    return BothRepresentations(
        product_id=product_id,
        raw_jsonb=first["images"],
        created_at=first[_products.c.created_at],
        source=first[_products.c.source],
        rows=rows,
    )


def record_mismatches(
    session: TenantSession,
    both: BothRepresentations,
    differences: Sequence[Difference],
    *,
    read_path: str,
) -> None:
    """Add the differences to the tenant's sample and trim it to its bound."""
    table_value = [image_to_element(image) for image in both.rows]
    for difference in differences:
        recent = (
            select(literal(1))
            .select_from(_mismatches)
            .where(
                _mismatches.c.product_id == both.product_id,
                _mismatches.c.kind == difference.kind,
                _mismatches.c.found_at > func.now() - text(f"interval '{_REPEAT_WINDOW}'"),
            )
            .exists()
        )
        values = select(
            literal(both.product_id),
            literal(difference.kind),
            literal(difference.detail),
            literal(read_path),
            literal(list(difference.jsonb_ids), _mismatches.c.jsonb_ids.type),
            literal(list(difference.table_ids), _mismatches.c.table_ids.type),
            func.cast(literal(json.dumps(both.raw_jsonb)), _mismatches.c.jsonb_value.type),
            func.cast(literal(json.dumps(table_value)), _mismatches.c.table_value.type),
        ).where(~recent)
        session.execute(
            insert(_mismatches).from_select(
                [
                    "product_id",
                    "kind",
                    "detail",
                    "read_path",
                    "jsonb_ids",
                    "table_ids",
                    "jsonb_value",
                    "table_value",
                ],
                values,
            )
        )
    oldest_kept = (
        select(_mismatches.c.id)
        .order_by(_mismatches.c.id.desc())
        .offset(SAMPLE_SIZE - 1)
        .limit(1)
        .scalar_subquery()
    )
    session.execute(delete(_mismatches).where(_mismatches.c.id < oldest_kept))


def sampled(session: TenantSession, *, limit: int = SAMPLE_SIZE) -> list[SampledMismatch]:
    """The latest mismatches first."""
    rows = session.execute(
        select(
            _mismatches.c.product_id,
            _mismatches.c.kind,
            _mismatches.c.detail,
            _mismatches.c.read_path,
            _mismatches.c.found_at,
        )
        .order_by(_mismatches.c.id.desc())
        .limit(limit)
    ).all()
    return [SampledMismatch(*row) for row in rows]


def clear_verified(session: TenantSession, reason: str) -> bool:
    """Drift: the tenant is no longer verified (read-table's interlock sends its reads back
    to the JSONB) and its drift generation moves on. True when it was verified until now."""
    return migration_state.record_drift(session, session.quoted_schema, reason)
