"""What the enrichment has done so far, per tenant (`backfill report metadata`, the console)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, exists, func, select

from app.core.database import tenant_engine
from app.models.user.image_metadata_failure import ImageMetadataFailure
from app.models.user.product_image import ProductImage
from backfill.enrich.pending import is_ready, lacks_metadata, pending_count


@dataclass
class MetadataCounts:
    """A tenant's images by metadata state (the status and the console show these)."""

    tenant_id: int
    complete: int = 0
    pending: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


def metadata_report(
    engine: Engine, tenant_ids: Sequence[int]
) -> tuple[list[MetadataCounts], list[tuple[object, ...]]]:
    """Per tenant: complete, pending (lacking metadata, not failed) and failed by reason;
    and the failed images (latest first) of tenants migrated to 0009."""
    counts: list[MetadataCounts] = []
    failures: list[tuple[object, ...]] = []
    for tenant_id in tenant_ids:
        if not is_ready(engine, tenant_id):
            continue
        row = MetadataCounts(tenant_id)
        with tenant_engine(engine, tenant_id).connect() as connection:
            failed_here = exists().where(ImageMetadataFailure.image_id == ProductImage.id)
            row.complete = int(
                connection.execute(
                    select(func.count()).select_from(ProductImage).where(~lacks_metadata())
                ).scalar_one()
            )
            row.failed = int(
                connection.execute(
                    select(func.count())
                    .select_from(ProductImage)
                    .where(lacks_metadata(), failed_here)
                ).scalar_one()
            )
            row.pending = pending_count(engine, tenant_id, retry_failed=False)
            for reason, n in connection.execute(
                select(ImageMetadataFailure.reason, func.count()).group_by(
                    ImageMetadataFailure.reason
                )
            ).all():
                row.reasons[str(reason)] = int(n)
            failures.extend(
                (tenant_id, *found)
                for found in connection.execute(
                    select(
                        ImageMetadataFailure.product_id,
                        ImageMetadataFailure.image_id,
                        ImageMetadataFailure.reason,
                        ImageMetadataFailure.detail,
                        ImageMetadataFailure.attempts,
                        ImageMetadataFailure.url,
                    )
                    .order_by(ImageMetadataFailure.last_attempt_at.desc())
                    .limit(200)
                ).all()
            )
        counts.append(row)
    return counts, failures
