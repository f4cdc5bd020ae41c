"""The enrichment's writes: one transaction per batch of products, through the dual-write.

Inside the batch's transaction each product is locked (`SELECT ... FOR UPDATE`, taken by
`ProductImageService.enrich_images`) in ascending id order, the order the backfill locks in
too, and both representations change together; the failure report changes in the same
transaction. One commit per batch instead of one per product: the per-transaction cost
(the session, the stage's three queries, the commit's WAL flush) is paid once for all.

A row held by someone else past `lock_timeout_ms` rolls the batch back; its products are
then written one transaction each, so that only the held one is left for the next run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import structlog
from sqlalchemy import Engine, delete, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError

from app.core.database import TenantSession, unit_of_work
from app.models.user.image_metadata_failure import ImageMetadataFailure
from app.services.product_image_service import FoundMetadata, ProductImageService
from app.services.product_service import ProductNotFound
from backfill.enrich.fetch import Failed, Fetched
from backfill.enrich.options import EnrichOptions
from backfill.enrich.pending import Pending

log = structlog.get_logger("backfill")

LOCK_NOT_AVAILABLE = "55P03"

Answers = Mapping[str, Fetched | Failed]  # by URL; an image with known facts has none


@dataclass(frozen=True)
class RecordedFailure:
    """One image whose object could not be read, as recorded in image_metadata_failures."""

    product_id: int
    image_id: UUID
    failure: Failed


@dataclass
class Written:
    """What writing one batch did."""

    enriched: int = 0
    skipped: int = 0  # gone, changed or locked since they were read: the next run
    failures: list[RecordedFailure] = field(default_factory=list)
    transactions: int = 0  # committed

    def add(self, other: Written) -> None:
        """Count `other` in too."""
        self.enriched += other.enriched
        self.skipped += other.skipped
        self.failures.extend(other.failures)
        self.transactions += other.transactions


def write_batch(
    engine: Engine,
    service: ProductImageService,
    tenant_id: int,
    products: Mapping[int, Sequence[Pending]],
    answers: Answers,
    options: EnrichOptions,
) -> Written:
    """Write a batch's products (their pending images, by product id) in one transaction;
    product by product when a lock was not available in time. Nothing written in a dry run."""
    if options.dry_run:
        return _counted(products, answers)
    now = datetime.now(UTC)
    ids = sorted(products)
    try:
        written = _write(engine, service, tenant_id, products, ids, answers, options, now)
    except DBAPIError as exc:
        if not _is_lock_timeout(exc):
            raise
        log.warning("enrich.batch_locked", tenant=tenant_id, products=len(ids))
        written = Written()
        for product_id in ids:
            try:
                written.add(
                    _write(
                        engine, service, tenant_id, products, [product_id], answers, options, now
                    )
                )
            except DBAPIError as exc:
                if not _is_lock_timeout(exc):
                    raise
                log.warning("enrich.product_locked", tenant=tenant_id, product=product_id)
                written.skipped += len(products[product_id])
    for recorded in written.failures:
        log.info(
            "enrich.image_failed",
            tenant=tenant_id,
            product=recorded.product_id,
            image=str(recorded.image_id),
            reason=recorded.failure.reason.value,
            detail=recorded.failure.detail,
        )
    return written


def _write(
    engine: Engine,
    service: ProductImageService,
    tenant_id: int,
    products: Mapping[int, Sequence[Pending]],
    ids: Sequence[int],
    answers: Answers,
    options: EnrichOptions,
    now: datetime,
) -> Written:
    """The products `ids` (ascending: the lock order) in one transaction."""
    written = Written()
    filled: list[UUID] = []
    with unit_of_work(engine, tenant_id) as session:
        session.execute(text(f"SET LOCAL lock_timeout = '{int(options.lock_timeout_ms)}ms'"))
        for product_id in ids:
            rows = products[product_id]
            found, failed = _found_and_failed(rows, answers)
            try:
                outcome = service.enrich_images(
                    session, product_id=product_id, found=found, now=now
                )
            except ProductNotFound:  # deleted since it was read; nothing of it was written
                written.skipped += len(rows)
                continue
            # A failure is recorded only for an image that still has the URL that failed.
            present = {image.id: image.url for image in outcome.images}
            still = [
                RecordedFailure(product_id, image_id, failure)
                for image_id, failure in failed.items()
                if present.get(image_id) == failure.url
            ]
            written.enriched += len(outcome.enriched)
            written.skipped += len(outcome.skipped) + len(failed) - len(still)
            written.failures.extend(still)
            filled.extend(outcome.enriched)
        _record_failures(session, written.failures, now)
        _forget_failures(session, filled)
    written.transactions = 1
    return written


def _found_and_failed(
    rows: Sequence[Pending], answers: Answers
) -> tuple[list[FoundMetadata], dict[UUID, Failed]]:
    """What was read for a product's pending images, and what could not be."""
    found: list[FoundMetadata] = []
    failed: dict[UUID, Failed] = {}
    for row in rows:
        answer = answers.get(row.url)
        if isinstance(answer, Failed):
            failed[row.id] = answer
        elif isinstance(answer, Fetched):
            found.append(
                FoundMetadata(
                    row.id,
                    row.url,
                    mime_type=answer.mime_type,
                    file_size=answer.file_size,
                    width=answer.width,
                    height=answer.height,
                )
            )
        else:  # type, size and pixels known already: only the alt text is missing
            found.append(FoundMetadata(row.id, row.url))
    return found, failed


def _counted(products: Mapping[int, Sequence[Pending]], answers: Answers) -> Written:
    """A dry run's outcome: what would be filled and what failed, nothing written."""
    written = Written()
    for product_id, rows in products.items():
        found, failed = _found_and_failed(rows, answers)
        written.enriched += len(found)
        written.failures.extend(
            RecordedFailure(product_id, image_id, failure) for image_id, failure in failed.items()
        )
    return written


def _is_lock_timeout(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE


def _record_failures(
    session: TenantSession, failures: Sequence[RecordedFailure], now: datetime
) -> None:
    """One upsert for the batch: a new failure row, or one more attempt of a known one."""
    if not failures:
        return
    statement = insert(ImageMetadataFailure).values(
        [
            {
                "image_id": recorded.image_id,
                "product_id": recorded.product_id,
                "url": recorded.failure.url,
                "reason": recorded.failure.reason.value,
                "detail": recorded.failure.detail,
                "attempts": 1,
                "last_attempt_at": now,
            }
            for recorded in failures
        ]
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[ImageMetadataFailure.image_id],
            set_={
                "product_id": statement.excluded.product_id,
                "url": statement.excluded.url,
                "reason": statement.excluded.reason,
                "detail": statement.excluded.detail,
                "attempts": ImageMetadataFailure.attempts + 1,
                "last_attempt_at": statement.excluded.last_attempt_at,
            },
        )
    )


def _forget_failures(session: TenantSession, image_ids: Sequence[UUID]) -> None:
    """A filled image's earlier failure goes (a `--retry-failed` success)."""
    if image_ids:
        session.execute(
            delete(ImageMetadataFailure)
            .where(ImageMetadataFailure.image_id.in_(list(image_ids)))
            .execution_options(synchronize_session=False)
        )
