"""ProductImageService: every image mutation, dual-written in one transaction under the
product's row lock; its reads (from the representation the tenant's stage says) are
app/services/image_reads.py.

Over 300 lines because each mutation is a short function around one shared `_mutate` (lock,
build, dual-write, record): apart, the one transaction's rules would spread."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

import structlog

from app.core.database import TenantSession
from app.core.errors import DomainError
from app.core.metrics import (
    DRIFT_FALLBACKS,
    IMAGE_WRITES,
)
from app.images import (
    Image,
    ImageNotFound,
    image_to_element,
    is_legacy_source,
    normalise_legacy,
    operations,
)
from app.images.operations import UNSET, Unset
from app.images.urls import check_image_url
from app.models import Product
from app.repositories import migration_state, product_images, shadow_reads
from app.services.image_paths import ImagePaths
from app.services.image_reads import ImageReads, served_jsonb
from app.services.product_service import (
    get_product,
    lock_for_write,
    lock_product,
)
from app.services.read_origins import ReadOriginRecorder

log = structlog.get_logger(__name__)

Change = Callable[[tuple[Image, ...]], tuple[Image, ...]]


class LabelNotFound(DomainError, LookupError):
    """The product has no label image."""

    status = 404
    field = "label"

    def __init__(self, product_id: int) -> None:
        super().__init__(f"product {product_id} has no label image")


@dataclass(frozen=True)
class NewImage:
    """What a caller gives to add an image (metadata known from an upload, or not)."""

    url: str
    alt_text: str | None = None
    tags: tuple[str, ...] = ()
    is_label: bool = False
    mime_type: str | None = None
    file_size: int | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class FoundMetadata:
    """What the enrichment read from one image's stored object (None: not read, kept)."""

    image_id: UUID
    url: str  # the URL it was read from: an image whose URL changed since is skipped
    mime_type: str | None = None
    file_size: int | None = None
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class Enrichment:
    """One product's enrichment: its images afterwards, which were filled, which skipped."""

    images: tuple[Image, ...]
    enriched: tuple[UUID, ...]
    skipped: tuple[UUID, ...]  # gone, or their URL changed, since they were read
    written: bool  # False when nothing changed (no write at all)


class _NothingToWrite(Exception):
    """Raised inside a change that changes nothing, so that `_mutate` writes nothing."""

    def __init__(self, images: tuple[Image, ...]) -> None:
        super().__init__("nothing to write")
        self.images = images


class ProductImageService(ImageReads):
    """The product-image use cases: the reads (app/services/image_reads.py) and every
    mutation, dual-written. Methods take the session and never commit."""

    def __init__(
        self,
        *,
        legacy_sources: Collection[str],
        max_images: int,
        url_bases: Sequence[str],
        paths: ImagePaths | None = None,
        reads: ReadOriginRecorder | None = None,
    ) -> None:
        super().__init__(legacy_sources=legacy_sources, paths=paths, reads=reads)
        self.max_images = max_images
        self.url_bases = tuple(url_bases)

    def check_url(self, url: str) -> str:
        """The URL if it is http(s) and under a storage base, else InvalidImageField."""
        return check_image_url(url, self.url_bases)

    # --- mutations ---------------------------------------------------------------------

    def add_image(
        self,
        session: TenantSession,
        *,
        product_id: int,
        image_data: NewImage,
        position: int | None,
        now: datetime,
    ) -> Image:
        """Add an image at the end or at `position`; setting it as label clears any other."""
        new = Image(
            id=uuid4(),
            url=image_data.url,
            order=0,
            is_label=image_data.is_label,
            alt_text=image_data.alt_text,
            tags=image_data.tags,
            mime_type=image_data.mime_type,
            file_size=image_data.file_size,
            width=image_data.width,
            height=image_data.height,
            created_at=now,
            updated_at=now,
        )
        images = self._mutate(
            session,
            product_id,
            lambda current: operations.add(
                current, new, position=position, max_images=self.max_images
            ),
            now=now,
        )
        return _find(images, new.id)

    def delete_image(
        self, session: TenantSession, *, product_id: int, image_id: UUID, now: datetime
    ) -> Image:
        """Remove one image and return it; the others are renumbered 0..n-1 in their order."""
        removed: list[Image] = []

        def change(current: tuple[Image, ...]) -> tuple[Image, ...]:
            removed.append(_find(current, image_id))
            return operations.delete(current, image_id)

        self._mutate(session, product_id, change, now=now)
        return removed[0]

    def image_urls(self, session: TenantSession, *, product_id: int) -> tuple[str, ...]:
        """Every URL the product's images hold, in its JSONB and in its rows, under its row
        lock: what deleting the product takes away (whichever representation is stale)."""
        resolution = self.paths.resolution(session)
        product = lock_product(session, product_id, with_images=resolution.writes_jsonb)
        urls: list[str] = []
        if resolution.writes_jsonb:
            urls += (i.url for i in served_jsonb(product.images, product.id, product.created_at))
        if resolution.writes_table or product_images.table_exists(session):
            urls += (image.url for image in product_images.load(session, product.id))
        return tuple(dict.fromkeys(urls))

    def reorder_images(
        self, session: TenantSession, *, product_id: int, new_order: list[UUID], now: datetime
    ) -> tuple[Image, ...]:
        """Put the images in the given order (a permutation of the product's image ids)."""
        return self._mutate(
            session, product_id, lambda current: operations.reorder(current, new_order), now=now
        )

    def set_label_flag(
        self,
        session: TenantSession,
        *,
        product_id: int,
        image_id: UUID,
        is_label: bool,
        now: datetime,
    ) -> Image:
        """Mark (or unmark) the price-tag photo; at most one per product."""
        images = self._mutate(
            session,
            product_id,
            lambda current: operations.set_label(current, image_id, is_label, now=now),
            now=now,
        )
        return _find(images, image_id)

    def update_image(
        self,
        session: TenantSession,
        *,
        product_id: int,
        image_id: UUID,
        now: datetime,
        alt_text: str | Unset | None = UNSET,
        tags: tuple[str, ...] | Unset = UNSET,
        is_label: bool | Unset = UNSET,
    ) -> Image:
        """Change alt text, tags and/or the label flag of one image, in one transaction."""

        def change(current: tuple[Image, ...]) -> tuple[Image, ...]:
            updated = operations.update(current, image_id, now=now, alt_text=alt_text, tags=tags)
            if isinstance(is_label, bool):
                updated = operations.set_label(updated, image_id, is_label, now=now)
            return updated

        return _find(self._mutate(session, product_id, change, now=now), image_id)

    def enrich_images(
        self,
        session: TenantSession,
        *,
        product_id: int,
        found: Sequence[FoundMetadata],
        now: datetime,
    ) -> Enrichment:
        """Fill one product's images with the metadata read from their objects, and a default
        alt text where an image has none, in one dual-write under the product's row lock. An
        image deleted or given another URL since it was read is skipped; nothing changed
        means nothing written."""
        enriched: list[UUID] = []
        skipped: list[UUID] = []

        def change(current: tuple[Image, ...]) -> tuple[Image, ...]:
            # Locked and loaded by `_mutate` a moment ago: the identity map answers.
            title = get_product(session, product_id).title
            by_id = {image.id: image for image in current}
            updated = current
            for facts in found:
                image = by_id.get(facts.image_id)
                if image is None or image.url != facts.url:
                    skipped.append(facts.image_id)
                    continue
                updated = operations.set_metadata(
                    updated,
                    facts.image_id,
                    mime_type=facts.mime_type,
                    file_size=facts.file_size,
                    width=facts.width,
                    height=facts.height,
                    alt_text=operations.default_alt_text(current, facts.image_id, title),
                    now=now,
                )
                enriched.append(facts.image_id)
            if updated == current:
                raise _NothingToWrite(current)
            return updated

        try:
            images = self._mutate(session, product_id, change, now=now)
        except _NothingToWrite as unchanged:
            return Enrichment(unchanged.images, tuple(enriched), tuple(skipped), written=False)
        return Enrichment(images, tuple(enriched), tuple(skipped), written=True)

    # --- the dual-write ----------------------------------------------------------------

    def _mutate(
        self, session: TenantSession, product_id: int, change: Change, *, now: datetime
    ) -> tuple[Image, ...]:
        """Lock the product, load its images, apply the pure change, write both representations."""
        started = time.perf_counter()
        resolution = self.paths.resolution(session)
        writes_table, writes_jsonb = resolution.writes_table, resolution.writes_jsonb
        # The safety net's triggers skip a write that keeps both representations equal;
        # the kill switch's write does not declare itself, so the triggers log it as drift.
        written_outside = False
        if writes_table and writes_jsonb:
            product, written_outside = lock_for_write(session, product_id, writer="dual-write")
        elif writes_jsonb:
            product = lock_product(session, product_id, with_images=True, writer="")
        else:
            product = lock_product(session, product_id)
        has_table = writes_table or product_images.table_exists(session)
        current = self._current(
            session,
            product,
            has_table=has_table,
            # Logged by the safety net: the JSONB was written outside the dual-write (an old
            # app version, the importer, the kill switch), so the rows may be stale and must
            # not be written back over it; this write rebuilds both from the JSONB.
            use_rows=writes_table and not written_outside,
            has_jsonb=writes_jsonb,
            found_by="dual-write" if writes_table else "kill-switch write",
        )
        changed = change(current)
        if writes_jsonb:  # gone after the contract: the table is the only representation
            product.images = [image_to_element(image) for image in changed]
        product.updated_at = now
        if writes_table:
            product_images.replace(session, product.id, changed)
            if written_outside:  # both equal again, under the product's lock
                migration_state.forget_changes(session, session.quoted_schema, [product.id])
        elif has_table:
            # Dual-write is off (the kill switch): the product's rows would go stale, so they
            # go. Rows are always equal to the JSONB or absent; the backfill brings them back,
            # and the tenant must be verified again before it may read the table.
            product_images.forget(session, product.id)
            if shadow_reads.clear_verified(session, f"dual-write off: product {product.id}"):
                DRIFT_FALLBACKS.labels(found_by="kill-switch").inc()
                log.warning("images.verified_state_cleared", product=product.id)
        session.flush()
        IMAGE_WRITES.labels(dual_write=str(writes_table).lower()).observe(
            time.perf_counter() - started
        )
        log.info("images.written", product=product.id, images=len(changed), table=writes_table)
        return changed

    def _current(
        self,
        session: TenantSession,
        product: Product,
        *,
        has_table: bool,
        use_rows: bool,
        has_jsonb: bool,
        found_by: str,
    ) -> tuple[Image, ...]:
        """The table rows when the product has some, else its JSONB migrated on first touch
        (after the contract there is no JSONB: the rows are all there is). The write that
        follows rewrites the JSONB without the elements that cannot be images: each is kept
        in the rejection report first, whatever the flags say."""
        if use_rows or not has_jsonb:
            rows = product_images.load(session, product.id)
            if rows or not has_jsonb:
                return rows
        migrated = normalise_legacy(
            product.images,
            product_id=product.id,
            product_created_at=product.created_at,
            is_legacy_source=is_legacy_source(product.source, self.legacy_sources),
        )
        if has_table:
            product_images.record_rejections(
                session, product.id, migrated.rejected, found_by=found_by
            )
        if migrated.rejected:
            log.warning(
                "images.rejected_elements",
                product=product.id,
                reasons=sorted({element.reason for element in migrated.rejected}),
            )
        return migrated.images


def _find(images: tuple[Image, ...], image_id: UUID) -> Image:
    for image in images:
        if image.id == image_id:
            return image
    raise ImageNotFound(image_id)
