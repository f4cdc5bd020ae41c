"""Reads and writes of the table representation (`product_images`) and the rejection report."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, delete, select, text
from sqlalchemy.dialects.postgresql import insert

from app.core.database import TenantSession
from app.images import Image, RejectedElement, image_to_row, row_to_image
from app.models import ProductImage, RejectedImageElement

_images: Table = ProductImage.__table__  # type: ignore[assignment]
_rejects: Table = RejectedImageElement.__table__  # type: ignore[assignment]
_COLUMNS = tuple(column.name for column in _images.columns)
_insert = insert(_images)
_UPSERT = _insert.on_conflict_do_update(
    index_elements=[_images.c.id],
    set_={name: _insert.excluded[name] for name in _COLUMNS if name != "id"},
)


def table_exists(session: TenantSession) -> bool:
    """Whether the tenant's schema has been expanded (read inside the caller's transaction)."""
    name = f"{session.quoted_schema}.product_images"
    return bool(
        session.execute(text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name}).scalar_one()
    )


def load(session: TenantSession, product_id: int) -> tuple[Image, ...]:
    """The product's rows, by order."""
    rows = session.execute(
        select(_images).where(_images.c.product_id == product_id).order_by(_images.c.order)
    ).mappings()
    return tuple(row_to_image(dict(row)) for row in rows)


def replace(session: TenantSession, product_id: int, images: Sequence[Image]) -> None:
    """Make the product's rows exactly `images` (caller holds the product's row lock)."""
    # (product_id, order) is deferrable: swaps inside this transaction are fine until commit.
    session.execute(text("SET CONSTRAINTS ALL DEFERRED"))
    kept = [image.id for image in images]
    session.execute(
        delete(_images).where(_images.c.product_id == product_id, _images.c.id.not_in(kept))
        if kept
        else delete(_images).where(_images.c.product_id == product_id)
    )
    if not images:
        return
    # The one-label index cannot be deferred and is checked row by row: write the rows that
    # lose or lack the label before the one that gains it.
    rows = [image_to_row(image, product_id) for image in sorted(images, key=lambda i: i.is_label)]
    # One statement object for every call: SQLAlchemy compiles it once and sends the rows as
    # one multi-row INSERT (insertmanyvalues), in the order given.
    session.execute(_UPSERT, rows)


def forget(session: TenantSession, product_id: int) -> None:
    """Drop the product's rows (it counts as not migrated again)."""
    session.execute(delete(_images).where(_images.c.product_id == product_id))


def record_rejections(
    session: TenantSession, product_id: int, rejected: Sequence[RejectedElement], *, found_by: str
) -> None:
    """Keep each legacy element that cannot be an image, with its reason (idempotent)."""
    if not rejected:
        return
    rows = [
        {
            "product_id": product_id,
            "position": -1 if element.position is None else element.position,
            "raw": element.raw,
            "reason": element.reason,
            "detail": element.detail,
            "found_by": found_by,
        }
        for element in rejected
    ]
    session.execute(insert(_rejects).values(rows).on_conflict_do_nothing())
