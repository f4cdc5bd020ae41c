"""Each tenant's image reads by origin over the last hour, across the app's processes and
their restarts. A process tallies its reads in memory (`ReadOriginRecorder.record`: no I/O on
the read path); a background thread adds the tallies to `public.read_origin_stats` in one
upsert every few seconds and prunes what is older than the hour; `origin_stats` summarises a
tenant's last hour for the console."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from app.core.read_origins import (
    BUCKETS,
    OriginBucket,
    OriginSummary,
    ReadOrigin,
    latency_bucket,
    summarise,
)
from app.core.security import now_utc
from app.repositories import read_origins
from app.repositories.read_origins import MinuteTally

log = structlog.get_logger(__name__)

WINDOW = timedelta(hours=1)  # what the console shows, and what the store keeps
FLUSH_SECONDS = 5.0  # how far behind the store may be, per process
PRUNE_EVERY = timedelta(minutes=1)

Key = tuple[int, datetime, ReadOrigin]


def minute_of(moment: datetime) -> datetime:
    """The minute a moment falls in (its bucket in the store)."""
    return moment.replace(second=0, microsecond=0)


@dataclass
class _Tally:
    reads: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    counts: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add(self, other: _Tally) -> None:
        self.reads += other.reads
        self.errors += other.errors
        self.latency_sum += other.latency_sum
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]


class ReadOriginRecorder:
    """One process's tallies of image reads per tenant, origin and minute, written to the
    store by a background thread (started by the first read) every `flush_seconds`; `close`
    stops it and writes what is left. A failed write keeps its tallies for the next one."""

    def __init__(
        self,
        engine: Engine,
        *,
        flush_seconds: float = FLUSH_SECONDS,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self._engine = engine
        self._flush_seconds = flush_seconds
        self._clock = clock
        self._lock = threading.Lock()  # guards the tallies; held for microseconds
        self._flushing = threading.Lock()  # one flush at a time: the thread's, close's
        self._pending: dict[Key, _Tally] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at: datetime | None = None

    def record(self, tenant_id: int, origin: ReadOrigin, seconds: float, *, failed: bool) -> None:
        """Count one read of the tenant (failed or not) and its latency."""
        key = (tenant_id, minute_of(self._clock()), origin)
        with self._lock:
            tally = self._pending.get(key)
            if tally is None:
                tally = self._pending[key] = _Tally()
            tally.reads += 1
            tally.errors += failed
            tally.latency_sum += seconds
            tally.counts[latency_bucket(seconds)] += 1
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="read-origins-flush", daemon=True
                )
                self._thread.start()

    def flush(self) -> None:
        """Add the tallies so far to the store in one statement (and prune it, at most once a
        minute), in a transaction of its own."""
        with self._flushing:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return
            now = self._clock()
            oldest_kept = minute_of(now - WINDOW)
            tallies = [
                MinuteTally(
                    tenant_id,
                    minute,
                    OriginBucket(
                        origin, tally.reads, tally.errors, tally.latency_sum, tuple(tally.counts)
                    ),
                )
                for (tenant_id, minute, origin), tally in pending.items()
            ]
            prune = self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY
            try:
                with self._engine.begin() as connection:
                    read_origins.add(connection, tallies)
                    if prune:
                        read_origins.prune(connection, before=oldest_kept)
            except SQLAlchemyError as exc:
                log.warning(
                    "read_origins.flush_failed",
                    error=(str(exc).splitlines() or [""])[0],
                    kept=len(pending),
                )
                self._keep(pending, oldest_kept)
                return
            if prune:
                self._pruned_at = now

    def close(self) -> None:
        """Stop the thread and write what is left (a process's last seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()

    def _keep(self, pending: dict[Key, _Tally], oldest_kept: datetime) -> None:
        # Back in with whatever was recorded meanwhile; minutes past the window are dropped,
        # so a database down for long cannot grow the tallies without bound.
        with self._lock:
            for key, tally in pending.items():
                if key[1] < oldest_kept:
                    continue
                if key in self._pending:
                    self._pending[key].add(tally)
                else:
                    self._pending[key] = tally

    def _run(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            try:
                self.flush()
            except Exception:  # the thread must outlive a bug in one flush: logged, not lost
                log.exception("read_origins.flush_crashed")


def origin_stats(
    bind: Engine | Connection,
    tenant_id: int,
    *,
    since: timedelta = WINDOW,
    now: datetime | None = None,
) -> tuple[OriginSummary, ...]:
    """The tenant's image reads per origin over the last `since` (to the minute, as written
    by every process up to a flush ago): reads, errors, error rate, mean and p50/p95/p99."""
    start = minute_of((now or now_utc()) - since)
    if isinstance(bind, Engine):
        with bind.connect() as connection:
            buckets = read_origins.buckets_since(connection, tenant_id, since=start)
    else:
        buckets = read_origins.buckets_since(bind, tenant_id, since=start)
    return summarise(buckets)
