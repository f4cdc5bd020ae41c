"""What the enrichment is for: the images that lack metadata, read in keyset batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import Engine, and_, exists, func, or_, select, text

from app.core.database import tenant_engine, tenant_schema
from app.models.user.image_metadata_failure import ImageMetadataFailure
from app.models.user.product_image import ProductImage
from backfill.enrich.options import EnrichOptions


def lacks_metadata() -> Any:
    """The images the enrichment is for: any of the five metadata fields still NULL."""
    return or_(
        ProductImage.mime_type.is_(None),
        ProductImage.file_size.is_(None),
        ProductImage.width.is_(None),
        ProductImage.height.is_(None),
        ProductImage.alt_text.is_(None),
    )


def pending_conditions(retry_failed: bool) -> list[Any]:
    """Lacking metadata and, unless `retry_failed`, without a recorded failure."""
    conditions = [lacks_metadata()]
    if not retry_failed:
        conditions.append(~exists().where(ImageMetadataFailure.image_id == ProductImage.id))
    return conditions


def is_ready(engine: Engine, tenant_id: int) -> bool:
    """The tenant has the table and the failure report (migrated to 0009 or later)."""
    schema = tenant_schema(tenant_id)
    with engine.connect() as connection:
        return bool(
            connection.execute(
                text(
                    "SELECT to_regclass(:images) IS NOT NULL AND to_regclass(:failures) IS NOT NULL"
                ),
                {
                    "images": f'"{schema}".product_images',
                    "failures": f'"{schema}".image_metadata_failures',
                },
            ).scalar_one()
        )


def pending_count(engine: Engine, tenant_id: int, *, retry_failed: bool) -> int:
    """Images the run would look at in this tenant (the progress bar's total)."""
    with tenant_engine(engine, tenant_id).connect() as connection:
        return int(
            connection.execute(
                select(func.count())
                .select_from(ProductImage)
                .where(*pending_conditions(retry_failed))
            ).scalar_one()
        )


@dataclass(frozen=True)
class Pending:
    """One image that lacks metadata, as read before the fetch."""

    id: UUID
    product_id: int
    url: str
    has_facts: bool  # type, size and pixels known: only the alt text is missing


def next_batch(engine: Engine, tenant_id: int, after: int, options: EnrichOptions) -> list[Pending]:
    """The pending images of the next products after `after`, in one short read (its
    transaction ends here, before anything is fetched)."""
    conditions = pending_conditions(options.retry_failed)
    products = (
        select(ProductImage.product_id)
        .where(ProductImage.product_id > after, *conditions)
        .group_by(ProductImage.product_id)
        .order_by(ProductImage.product_id)
        .limit(options.batch_products)
    )
    has_facts = and_(
        ProductImage.mime_type.is_not(None),
        ProductImage.file_size.is_not(None),
        ProductImage.width.is_not(None),
        ProductImage.height.is_not(None),
    )
    with tenant_engine(engine, tenant_id).connect() as connection:
        product_ids = list(connection.execute(products).scalars())
        if not product_ids:
            return []
        rows = connection.execute(
            select(
                ProductImage.id,
                ProductImage.product_id,
                ProductImage.url,
                has_facts.label("has_facts"),
            )
            .where(ProductImage.product_id.in_(product_ids), *conditions)
            .order_by(ProductImage.product_id, ProductImage.order)
        ).all()
    return [Pending(row.id, row.product_id, row.url, bool(row.has_facts)) for row in rows]
