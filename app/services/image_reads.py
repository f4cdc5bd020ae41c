"""The image read router: a product's images from the representation the tenant's stage
says (JSONB, table, or both compared in shadow mode), timed and counted by origin. The base
of ProductImageService (app/services/product_image_service.py), which adds the mutations."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.exc import SQLAlchemyError

from app.core.database import TenantSession
from app.core.metrics import (
    DRIFT_FALLBACKS,
    IMAGE_READ_ERRORS,
    IMAGE_READ_SECONDS,
    IMAGE_READS,
    SHADOW_COMPARISONS,
    SHADOW_MISMATCHES,
)
from app.core.read_origins import ReadOrigin
from app.images import Image, is_legacy_source, normalise_legacy, operations
from app.images.differences import Difference, compare_representations
from app.repositories import product_images, shadow_reads
from app.repositories.shadow_reads import BothRepresentations
from app.services.image_paths import ImagePaths, ReadPath
from app.services.product_service import ProductNotFound, get_product
from app.services.read_origins import ReadOriginRecorder

log = structlog.get_logger("app.services.product_image_service")


@dataclass(frozen=True)
class ImageList:
    """A product's images and the representation that answered."""

    images: tuple[Image, ...]
    read_path: ReadPath


class ImageReads:
    """Reads of a product's images; methods take the session and never commit."""

    def __init__(
        self,
        *,
        legacy_sources: Collection[str],
        paths: ImagePaths | None = None,
        reads: ReadOriginRecorder | None = None,
    ) -> None:
        self.legacy_sources = frozenset(legacy_sources)
        self.paths = paths or ImagePaths()
        self.reads = reads  # per-tenant read figures for the console (None: /metrics only)

    def list_images(self, session: TenantSession, *, product_id: int) -> ImageList:
        """Every image of the product, in order, from the tenant's read path (and compared
        with the other representation when the tenant is in shadow mode); timed, and counted
        by origin, failed or not (an unknown product is an answer, not a failure)."""
        started = time.perf_counter()
        resolution = self.paths.resolution(session)
        origin = ReadOrigin.SHADOW if resolution.shadow else ReadOrigin(resolution.read_path)
        failed = True
        try:
            listed = self._read(session, product_id, resolution.shadow, resolution.read_path)
            failed = False
        except ProductNotFound:
            failed = False
            raise
        finally:
            seconds = time.perf_counter() - started
            IMAGE_READ_SECONDS.labels(origin=origin.value).observe(seconds)
            if failed:
                IMAGE_READ_ERRORS.labels(origin=origin.value).inc()
            if self.reads is not None:
                tenant_id = session.tenant_id
                self.reads.record(tenant_id, origin, seconds, failed=failed)
        IMAGE_READS.labels(path=listed.read_path.value).inc()
        return listed

    def _read(
        self, session: TenantSession, product_id: int, shadow: bool, path: ReadPath
    ) -> ImageList:
        if shadow:
            return self._shadow_read(session, product_id, path)
        product = get_product(session, product_id)
        if path is ReadPath.TABLE:
            return ImageList(product_images.load(session, product.id), ReadPath.TABLE)
        return ImageList(
            served_jsonb(product.images, product.id, product.created_at), ReadPath.JSONB
        )

    def compare(self, session: TenantSession, *, product_id: int) -> list[Difference]:
        """How the product's table rows differ from its JSONB right now (one snapshot)."""
        both = shadow_reads.read_both(session, product_id)
        if both is None:
            raise ProductNotFound(product_id)
        return self._differences(both)

    def _differences(self, both: BothRepresentations) -> list[Difference]:
        return compare_representations(
            both.product_id,
            both.raw_jsonb,
            both.rows,
            product_created_at=both.created_at,
            is_legacy_source=is_legacy_source(both.source, self.legacy_sources),
        )

    def _shadow_read(self, session: TenantSession, product_id: int, path: ReadPath) -> ImageList:
        """Read both representations in one snapshot, compare, answer from `path`; a
        mismatch is logged, counted and sampled, and while the tenant reads the table it is
        drift: the tenant loses its verified state and this read already comes from the JSONB,
        which the dual-write kept complete."""
        both = shadow_reads.read_both(session, product_id)
        if both is None:
            raise ProductNotFound(product_id)
        differences = self._differences(both)
        served = ImageList(
            served_jsonb(both.raw_jsonb, both.product_id, both.created_at), ReadPath.JSONB
        )
        if not differences:
            SHADOW_COMPARISONS.labels(outcome="match").inc()
            return ImageList(both.rows, path) if path is ReadPath.TABLE else served
        SHADOW_COMPARISONS.labels(outcome="mismatch").inc()
        for difference in differences:
            SHADOW_MISMATCHES.labels(kind=difference.kind).inc()
            log.error(
                "images.shadow_mismatch",
                product=product_id,
                kind=difference.kind,
                detail=difference.detail,
                jsonb_ids=list(difference.jsonb_ids),
                table_ids=list(difference.table_ids),
                read_path=path.value,
            )
        try:
            with session.begin_nested():
                shadow_reads.record_mismatches(session, both, differences, read_path=path.value)
                # Verified claims "JSONB == table": a mismatch disproves it, whichever path
                # answers. On a table-reading tenant the interlock moves reads back at once.
                reason = f"shadow read of product {product_id}: {differences[0].kind}"
                if shadow_reads.clear_verified(session, reason):
                    DRIFT_FALLBACKS.labels(found_by="shadow-read").inc()
                    log.error(
                        "images.drift_fallback",
                        product=product_id,
                        kinds=sorted({d.kind for d in differences}),
                        read_path_was=path.value,
                        action="verified state cleared; reads stay on or go back to the JSONB",
                    )
        except SQLAlchemyError as exc:  # the read itself must still be answered
            log.error("images.shadow_record_failed", product=product_id, error=str(exc))
        return served

    def get_product_photos(self, session: TenantSession, *, product_id: int) -> ImageList:
        """The images that may be published: no label, in order."""
        listed = self.list_images(session, product_id=product_id)
        return ImageList(operations.photos(listed.images), listed.read_path)

    def get_label_image(self, session: TenantSession, *, product_id: int) -> Image | None:
        """The product's internal price-tag photo, if it has one."""
        return operations.label(self.list_images(session, product_id=product_id).images)


def served_jsonb(raw: object, product_id: int, created_at: datetime) -> tuple[Image, ...]:
    """The JSONB as the backend serves it today: no label is known until a product is
    migrated (by its first write or by the backfill), which is the bug being fixed."""
    return normalise_legacy(
        raw, product_id=product_id, product_created_at=created_at, is_legacy_source=False
    ).images
