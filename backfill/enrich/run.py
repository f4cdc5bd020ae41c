"""The enrichment run: tenant by tenant, keyset batches of products, reads and writes
pipelined (the next batch's objects are read while this batch is written)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog
from sqlalchemy import Engine

from app.core.database import unit_of_work
from app.services.product_image_service import ProductImageService
from backfill.enrich.fetch import Failed, Fetched, Fetcher
from backfill.enrich.options import EnrichOptions
from backfill.enrich.pending import Pending, is_ready, next_batch
from backfill.enrich.write import write_batch
from backfill.pacing import Controls, NoControls

log = structlog.get_logger("backfill")


@dataclass
class TenantEnrichment:
    """What one run did for one tenant."""

    tenant_id: int
    status: str = "running"  # done | stopped | not_ready | dual_write_off
    products: int = 0
    images: int = 0
    enriched: int = 0
    failed: int = 0
    skipped: int = 0  # changed (or locked) between the read and the write: next run
    requests: int = 0
    bytes_read: int = 0
    fetched: int = 0
    batches: int = 0
    transactions: int = 0  # committed writes: one per batch unless a lock was not available
    seconds: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        """Images handled per second."""
        return self.images / self.seconds if self.seconds else 0.0


Progress = Callable[[int, int], None]  # (tenant_id, images handled since the last call)


def _no_progress(tenant_id: int, images: int) -> None:
    return None


@dataclass(frozen=True)
class _Batch:
    rows: list[Pending]
    reads: dict[str, Future[Fetched | Failed]]
    after: int


class Enricher:
    """Runs the enrichment tenant by tenant with one connection pool and one thread pool."""

    def __init__(
        self,
        engine: Engine,
        service: ProductImageService,
        fetcher: Fetcher,
        options: EnrichOptions,
        *,
        controls: Controls | None = None,
        progress: Progress = _no_progress,
    ) -> None:
        self.engine = engine
        self.service = service
        self.fetcher = fetcher
        self.options = options
        self.controls = controls or NoControls()
        self.progress = progress

    def run(self, tenant_ids: Sequence[int]) -> list[TenantEnrichment]:
        """Every tenant in turn; stops between batches when asked."""
        results = []
        with ThreadPoolExecutor(
            max_workers=self.options.concurrency, thread_name_prefix="enrich"
        ) as pool:
            for tenant_id in tenant_ids:
                if self.controls.should_stop():
                    break
                results.append(self.tenant(tenant_id, pool))
        return results

    def tenant(self, tenant_id: int, pool: ThreadPoolExecutor) -> TenantEnrichment:
        """Enrich one tenant, batch after batch, until nothing is pending or a stop."""
        started = time.monotonic()
        result = TenantEnrichment(tenant_id)
        bound = log.bind(tenant=tenant_id, stage="enrich")
        if not is_ready(self.engine, tenant_id):
            result.status = "not_ready"
            bound.warning("enrich.not_ready")
            return result
        with unit_of_work(self.engine, tenant_id) as session:
            writes_table = self.service.paths.resolution(session).writes_table
        if not writes_table:
            result.status = "dual_write_off"
            bound.warning("enrich.dual_write_off")
            return result
        # Pipelined: the next batch is read over HTTP while this one is written. A stop
        # finishes the batch being written; the reads of the next one are dropped.
        stopped = self._stop_requested()
        batch = None if stopped else self._start(tenant_id, 0, pool)
        while batch is not None:
            batch_started = time.monotonic()
            stopped = self._stop_requested()
            upcoming = None if stopped else self._start(tenant_id, batch.after, pool)
            counts = self._finish(tenant_id, batch, result)
            result.batches += 1
            bound.info(
                "enrich.batch",
                batch=result.batches,
                after=batch.after,
                images=len(batch.rows),
                seconds=round(time.monotonic() - batch_started, 3),
                dry_run=self.options.dry_run,
                **counts,
            )
            self.progress(tenant_id, len(batch.rows))
            if upcoming is not None and self.controls.should_stop():
                for read in upcoming.reads.values():
                    read.cancel()
                stopped, upcoming = True, None
            batch = upcoming
        result.status = "stopped" if stopped else "done"
        result.seconds = time.monotonic() - started
        bound.info(
            "enrich.done",
            status=result.status,
            products=result.products,
            images=result.images,
            enriched=result.enriched,
            failed=result.failed,
            skipped=result.skipped,
            reasons=dict(result.reasons),
            requests=result.requests,
            bytes_read=result.bytes_read,
            transactions=result.transactions,
            seconds=round(result.seconds, 3),
            dry_run=self.options.dry_run,
        )
        return result

    def _stop_requested(self) -> bool:
        while not self.controls.should_stop() and self.controls.is_paused():
            self.controls.sleep(1.0)
        return self.controls.should_stop()

    def _start(self, tenant_id: int, after: int, pool: ThreadPoolExecutor) -> _Batch | None:
        """Read the next batch's rows and set its objects' reads going; None when done."""
        rows = next_batch(self.engine, tenant_id, after, self.options)
        if not rows:
            return None
        urls = sorted({row.url for row in rows if not row.has_facts})
        reads = {url: pool.submit(self.fetcher.fetch, url) for url in urls}
        return _Batch(rows, reads, rows[-1].product_id)

    def _finish(self, tenant_id: int, batch: _Batch, result: TenantEnrichment) -> dict[str, float]:
        """Wait for the batch's reads, then write its products in one transaction."""
        started = time.monotonic()
        answers = {url: read.result() for url, read in batch.reads.items()}
        fetched = time.monotonic()
        for answer in answers.values():
            result.requests += answer.requests
            result.bytes_read += answer.bytes_read
        result.fetched += len(answers)
        by_product: dict[int, list[Pending]] = {}
        for row in batch.rows:
            by_product.setdefault(row.product_id, []).append(row)
        written = write_batch(
            self.engine, self.service, tenant_id, by_product, answers, self.options
        )
        result.products += len(by_product)
        result.images += len(batch.rows)
        result.enriched += written.enriched
        result.failed += len(written.failures)
        result.skipped += written.skipped
        result.transactions += written.transactions
        result.reasons.update(recorded.failure.reason.value for recorded in written.failures)
        return {
            "enriched": written.enriched,
            "failed": len(written.failures),
            "skipped": written.skipped,
            "transactions": written.transactions,
            "fetch_wait_seconds": round(fetched - started, 3),
            "write_seconds": round(time.monotonic() - fetched, 3),
        }


def enrich_tenants(
    engine: Engine,
    service: ProductImageService,
    tenant_ids: Sequence[int],
    options: EnrichOptions,
    *,
    controls: Controls | None = None,
    progress: Progress = _no_progress,
) -> list[TenantEnrichment]:
    """Enrich the tenants through `service` (app.composition builds it: its flags, so the
    kill switch holds, and its URL bases, the only prefixes the enrichment requests)."""
    fetcher = Fetcher(service.url_bases, options)
    try:
        return Enricher(
            engine, service, fetcher, options, controls=controls, progress=progress
        ).run(tenant_ids)
    finally:
        fetcher.close()
