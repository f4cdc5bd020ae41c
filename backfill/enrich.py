"""The metadata enrichment: fill `product_images`' type, size, pixels and alt text from the
stored objects.

Per tenant, keyset batches of products whose images lack metadata (and have no recorded
failure, unless asked). The first bytes of each object are fetched concurrently, outside any
transaction, from URLs under the storage bases only (redirects followed by hand, at most
two, within the bases). Each product's results are then written in one transaction through
`ProductImageService` (the dual-write, under the product's row lock); an image changed
since it was read is skipped. A failure is recorded per image and never stops the run.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin
from uuid import UUID

import httpx
import structlog
from sqlalchemy import Engine, and_, delete, exists, func, or_, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.core.database import tenant_engine, tenant_schema, unit_of_work
from app.images.metadata import (
    HeaderFacts,
    NeedMoreBytes,
    Reason,
    Unreadable,
    backoff_delay,
    content_range,
    next_read_size,
    parse_header,
)
from app.images.urls import fetch_refusal
from app.models.user.image_metadata_failure import ImageMetadataFailure
from app.models.user.product_image import ProductImage
from app.services.product_image_service import FoundMetadata, ProductImageService
from app.services.product_service import ProductNotFound
from backfill.runner import Controls, NoControls

log = structlog.get_logger("backfill")

LOCK_NOT_AVAILABLE = "55P03"
REDIRECTS = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class EnrichOptions:
    """How a run behaves; the retry and timeout knobs are small so that tests stay fast."""

    concurrency: int = 8
    max_rate: float | None = None  # HTTP requests per second, across the whole run
    dry_run: bool = False
    retry_failed: bool = False
    batch_products: int = 100
    head_bytes: int = 64 * 1024
    max_head_bytes: int = 16 * 1024 * 1024  # a WebP is read whole by Pillow
    timeout: float = 10.0  # seconds per request: connect, each read, and in total
    retries: int = 3  # after the first try, on 429, 5xx, timeouts and connection errors
    backoff_base: float = 0.25
    backoff_cap: float = 8.0
    max_redirects: int = 2
    lock_timeout_ms: int = 2000


@dataclass(frozen=True)
class Fetched:
    """What one object's first bytes said."""

    url: str
    mime_type: str
    file_size: int
    width: int
    height: int
    requests: int
    bytes_read: int


@dataclass(frozen=True)
class Failed:
    """Why one object's metadata could not be read."""

    url: str
    reason: Reason
    detail: str
    requests: int
    bytes_read: int


class RateLimiter:
    """At most `rate` acquisitions per second across threads, evenly spaced."""

    def __init__(
        self,
        rate: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Wait for the next free slot."""
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


@dataclass
class _Tally:
    requests: int = 0
    bytes_read: int = 0


@dataclass(frozen=True)
class _Head:
    data: bytes
    total: int | None
    complete: bool


@dataclass(frozen=True)
class _Redirect:
    location: str


@dataclass(frozen=True)
class _Transient:
    detail: str
    retry_after: float | None = None


@dataclass(frozen=True)
class _Final:
    reason: Reason
    detail: str


class _DeadlinePassed(Exception):
    """The whole response took longer than the per-request timeout."""


class Fetcher:
    """Reads the first bytes of stored objects over HTTP, only under the storage bases."""

    def __init__(
        self,
        bases: Sequence[str],
        options: EnrichOptions,
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.bases = tuple(base.rstrip("/") for base in bases)
        self.options = options
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(options.timeout),
            limits=httpx.Limits(
                max_connections=options.concurrency,
                max_keepalive_connections=options.concurrency,
            ),
            follow_redirects=False,
            # Proxies from the environment would decide where requests go: not here.
            trust_env=False,
            headers={"Accept-Encoding": "identity", "User-Agent": "product-images-enrich"},
        )
        self.limiter = RateLimiter(options.max_rate)
        self._sleep = sleep
        self._jitter = jitter
        self._origins = {_origin(httpx.URL(base)) for base in self.bases}

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def refusal(self, url: str) -> str | None:
        """Why `url` must not be requested, or None (checked by two parsers that must agree)."""
        refused = fetch_refusal(url, self.bases)
        if refused is not None:
            return refused
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            return f"invalid URL: {exc}"
        if _origin(parsed) not in self._origins:
            return "the HTTP client reads its host differently"
        return None

    def fetch(self, url: str) -> Fetched | Failed:
        """Type, size and pixels of the object at `url`, or why not; never raises for I/O."""
        tally = _Tally()
        refused = self.refusal(url)
        if refused is not None:
            return Failed(url, Reason.REFUSED_URL, refused, 0, 0)
        wanted = self.options.head_bytes
        while True:
            head = self._first_bytes(url, wanted, tally)
            if isinstance(head, _Final):
                return Failed(url, head.reason, head.detail, tally.requests, tally.bytes_read)
            parsed = parse_header(head.data, complete=head.complete)
            if isinstance(parsed, HeaderFacts):
                if head.total is None:
                    return Failed(
                        url,
                        Reason.SIZE_UNKNOWN,
                        "the server sent neither Content-Range nor Content-Length",
                        tally.requests,
                        tally.bytes_read,
                    )
                return Fetched(
                    url,
                    parsed.mime_type,
                    head.total,
                    parsed.width,
                    parsed.height,
                    tally.requests,
                    tally.bytes_read,
                )
            if isinstance(parsed, Unreadable):
                return Failed(url, parsed.reason, parsed.detail, tally.requests, tally.bytes_read)
            more = next_read_size(
                wanted,  # not len(head.data): a server sending less than asked ends too
                at_least=parsed.at_least if isinstance(parsed, NeedMoreBytes) else None,
                total=head.total,
                limit=self.options.max_head_bytes,
            )
            if more is None:
                detail = (
                    f"no readable header in the first {len(head.data)} bytes "
                    f"(limit {self.options.max_head_bytes})"
                )
                return Failed(
                    url, Reason.HEADER_TOO_LARGE, detail, tally.requests, tally.bytes_read
                )
            wanted = more

    def _first_bytes(self, url: str, wanted: int, tally: _Tally) -> _Head | _Final:
        current = url
        for _hop in range(self.options.max_redirects + 1):
            answer = self._with_retries(current, wanted, tally)
            if not isinstance(answer, _Redirect):
                return answer
            target = urljoin(current, answer.location)
            refused = self.refusal(target)
            if refused is not None:
                return _Final(Reason.REFUSED_REDIRECT, f"to {target}: {refused}")
            current = target
        return _Final(
            Reason.TOO_MANY_REDIRECTS,
            f"more than {self.options.max_redirects} redirects (last to {current})",
        )

    def _with_retries(self, url: str, wanted: int, tally: _Tally) -> _Head | _Redirect | _Final:
        options = self.options
        reason, detail = Reason.TOO_MANY_RETRIES, ""
        for attempt in range(options.retries + 1):
            self.limiter.acquire()
            tally.requests += 1
            retry_after: float | None = None
            try:
                answer = self._get(url, wanted, tally)
            except (httpx.TimeoutException, _DeadlinePassed) as exc:
                reason, detail = Reason.TOO_MANY_RETRIES, f"timeout ({type(exc).__name__})"
            except httpx.RequestError as exc:
                reason, detail = Reason.UNREACHABLE, f"{type(exc).__name__}: {exc}"
            else:
                if not isinstance(answer, _Transient):
                    return answer
                reason, detail, retry_after = (
                    Reason.TOO_MANY_RETRIES,
                    answer.detail,
                    answer.retry_after,
                )
            if attempt < options.retries:
                delay = backoff_delay(
                    attempt,
                    base=options.backoff_base,
                    cap=options.backoff_cap,
                    jitter=self._jitter(),
                )
                if retry_after is not None:
                    delay = max(delay, min(retry_after, options.backoff_cap))
                self._sleep(delay)
        return _Final(reason, f"{detail} (after {options.retries + 1} attempts)")

    def _get(self, url: str, wanted: int, tally: _Tally) -> _Head | _Redirect | _Transient | _Final:
        deadline = time.monotonic() + self.options.timeout
        with self.client.stream("GET", url, headers={"Range": f"bytes=0-{wanted - 1}"}) as reply:
            status = reply.status_code
            if status in REDIRECTS:
                location = reply.headers.get("location")
                if not location:
                    return _Final(Reason.HTTP_ERROR, f"HTTP {status} without a Location")
                return _Redirect(location)
            if status in (404, 410):
                return _Final(Reason.NOT_FOUND, f"HTTP {status}")
            if status == 429 or status >= 500:
                return _Transient(f"HTTP {status}", _retry_after(reply.headers.get("retry-after")))
            if status == 206:
                ranged = content_range(reply.headers.get("content-range"))
                if ranged is None or ranged[0] != 0:
                    value = reply.headers.get("content-range")
                    return _Final(Reason.HTTP_ERROR, f"HTTP 206 with Content-Range {value!r}")
                data, _ended = _read(reply, wanted, deadline, tally)
                total = ranged[2]
                return _Head(data, total, total is not None and len(data) >= total)
            if status == 200:  # the server ignored the range: read the start, then hang up
                length = reply.headers.get("content-length", "")
                total = int(length) if length.isdigit() else None
                data, ended = _read(reply, wanted, deadline, tally)
                if ended and total is None:
                    total = len(data)
                return _Head(data, total, ended or (total is not None and len(data) >= total))
            if status == 416 and reply.headers.get("content-range", "").strip() == "bytes */0":
                return _Head(b"", 0, True)  # an empty object has no byte 0
            return _Final(Reason.HTTP_ERROR, f"HTTP {status}")


def _read(reply: httpx.Response, wanted: int, deadline: float, tally: _Tally) -> tuple[bytes, bool]:
    """Up to `wanted` bytes of the body and whether the body ended within them."""
    buffer = bytearray()
    for chunk in reply.iter_bytes():
        tally.bytes_read += len(chunk)
        buffer += chunk
        if len(buffer) >= wanted:
            return bytes(buffer[:wanted]), False
        if time.monotonic() > deadline:
            raise _DeadlinePassed
    return bytes(buffer), True


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host, url.port or DEFAULT_PORTS.get(url.scheme, 0)


# --- the run ---------------------------------------------------------------------------


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
    seconds: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        """Images handled per second."""
        return self.images / self.seconds if self.seconds else 0.0


Progress = Callable[[int, int], None]  # (tenant_id, images handled since the last call)


def _no_progress(tenant_id: int, images: int) -> None:
    return None


def lacks_metadata() -> Any:
    """The images the enrichment is for: any of the five metadata fields still NULL."""
    return or_(
        ProductImage.mime_type.is_(None),
        ProductImage.file_size.is_(None),
        ProductImage.width.is_(None),
        ProductImage.height.is_(None),
        ProductImage.alt_text.is_(None),
    )


def _pending_conditions(retry_failed: bool) -> list[Any]:
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
                .where(*_pending_conditions(retry_failed))
            ).scalar_one()
        )


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


@dataclass(frozen=True)
class Pending:
    """One image that lacks metadata, as read before the fetch."""

    id: UUID
    product_id: int
    url: str
    has_facts: bool  # type, size and pixels known: only the alt text is missing


def _next_batch(
    engine: Engine, tenant_id: int, after: int, options: EnrichOptions
) -> list[Pending]:
    """The pending images of the next products after `after`, in one short read (its
    transaction ends here, before anything is fetched)."""
    conditions = _pending_conditions(options.retry_failed)
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
        rows = _next_batch(self.engine, tenant_id, after, self.options)
        if not rows:
            return None
        urls = sorted({row.url for row in rows if not row.has_facts})
        reads = {url: pool.submit(self.fetcher.fetch, url) for url in urls}
        return _Batch(rows, reads, rows[-1].product_id)

    def _finish(self, tenant_id: int, batch: _Batch, result: TenantEnrichment) -> dict[str, float]:
        """Wait for the batch's reads, then write its products one by one."""
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
        counts: Counter[str] = Counter()
        for product_id, images in by_product.items():
            counts.update(self._write(tenant_id, product_id, images, answers, result))
        result.products += len(by_product)
        result.images += len(batch.rows)
        return {
            **{name: counts[name] for name in ("enriched", "failed", "skipped")},
            "fetch_wait_seconds": round(fetched - started, 3),
            "write_seconds": round(time.monotonic() - fetched, 3),
        }

    def _write(
        self,
        tenant_id: int,
        product_id: int,
        rows: list[Pending],
        answers: dict[str, Fetched | Failed],
        result: TenantEnrichment,
    ) -> Counter[str]:
        """One product in one transaction: the dual-write for what was read, the failure
        report for what was not; images changed since they were read are left alone."""
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
        counts: Counter[str] = Counter()
        if self.options.dry_run:
            counts.update(enriched=len(found), failed=len(failed))
            self._count(result, counts, failed.values())
            return counts
        now = datetime.now(UTC)
        try:
            with unit_of_work(self.engine, tenant_id) as session:
                session.execute(
                    text(f"SET LOCAL lock_timeout = '{int(self.options.lock_timeout_ms)}ms'")
                )
                outcome = self.service.enrich_images(
                    session, product_id=product_id, found=found, now=now
                )
                present = {image.id: image.url for image in outcome.images}
                still = {
                    image_id: failure
                    for image_id, failure in failed.items()
                    if present.get(image_id) == failure.url
                }
                _record_failures(session, product_id, still, now)
                _forget_failures(session, outcome.enriched)
        except ProductNotFound:
            counts.update(skipped=len(rows))
            self._count(result, counts, ())
            return counts
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            log.warning("enrich.product_locked", tenant=tenant_id, product=product_id)
            counts.update(skipped=len(rows))
            self._count(result, counts, ())
            return counts
        counts.update(
            enriched=len(outcome.enriched),
            failed=len(still),
            skipped=len(outcome.skipped) + len(failed) - len(still),
        )
        self._count(result, counts, still.values())
        for image_id, failure in still.items():
            log.info(
                "enrich.image_failed",
                tenant=tenant_id,
                product=product_id,
                image=str(image_id),
                reason=failure.reason.value,
                detail=failure.detail,
            )
        return counts

    @staticmethod
    def _count(result: TenantEnrichment, counts: Counter[str], failures: Iterable[Failed]) -> None:
        result.enriched += counts["enriched"]
        result.failed += counts["failed"]
        result.skipped += counts["skipped"]
        result.reasons.update(failure.reason.value for failure in failures)


def _record_failures(
    session: Session, product_id: int, failures: dict[UUID, Failed], now: datetime
) -> None:
    if not failures:
        return
    statement = insert(ImageMetadataFailure).values(
        [
            {
                "image_id": image_id,
                "product_id": product_id,
                "url": failure.url,
                "reason": failure.reason.value,
                "detail": failure.detail,
                "attempts": 1,
                "last_attempt_at": now,
            }
            for image_id, failure in failures.items()
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


def _forget_failures(session: Session, image_ids: Sequence[UUID]) -> None:
    if image_ids:
        session.execute(
            delete(ImageMetadataFailure)
            .where(ImageMetadataFailure.image_id.in_(list(image_ids)))
            .execution_options(synchronize_session=False)
        )


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
    bases = service.url_bases
    fetcher = Fetcher(bases, options)
    try:
        return Enricher(
            engine, service, fetcher, options, controls=controls, progress=progress
        ).run(tenant_ids)
    finally:
        fetcher.close()
