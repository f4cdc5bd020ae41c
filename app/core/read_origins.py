"""Image reads by origin (the path the tenant's stage chose: jsonb, table or shadow), in fixed
latency buckets, and their summary (requests, errors, error rate, p50/p95/p99). Pure: the
buckets come in, the summaries go out; `app/services/read_origins.py` does the I/O."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

# Upper bounds (seconds, inclusive, as Prometheus's `le`) of the latency buckets, shared by
# the /metrics histogram and the per-tenant store; one bucket more counts what is above the
# last. The store's arrays hold a count per bucket: changing these means emptying
# public.read_origin_stats (in the revision that changes them), or the hour mixes layouts.
LATENCY_BOUNDS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BUCKETS = len(LATENCY_BOUNDS) + 1
QUANTILES = (0.5, 0.95, 0.99)


class ReadOrigin(StrEnum):
    """Which read path answered: the JSONB, the table, or a shadow read (both, compared)."""

    JSONB = "jsonb"
    TABLE = "table"
    SHADOW = "shadow"


class InvalidBuckets(ValueError):
    """Bucket counts that do not match LATENCY_BOUNDS, or tallies that contradict each other."""


def latency_bucket(seconds: float) -> int:
    """The index of the bucket a read of `seconds` falls in (the last one: above every bound)."""
    return bisect_left(LATENCY_BOUNDS, seconds)


@dataclass(frozen=True)
class OriginBucket:
    """One origin's reads in one stretch of time (a minute, for the store), failed ones
    included: `latency_buckets[i]` reads took at most LATENCY_BOUNDS[i] (and more than the
    bound before); the last entry counts those above every bound."""

    origin: ReadOrigin
    reads: int
    errors: int
    latency_sum: float
    latency_buckets: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.latency_buckets) != BUCKETS:
            raise InvalidBuckets(
                f"latency_buckets: {len(self.latency_buckets)} counts, expected {BUCKETS}"
            )
        if min(self.latency_buckets) < 0 or sum(self.latency_buckets) != self.reads:
            raise InvalidBuckets("latency_buckets: must be counts that add up to reads")
        if not 0 <= self.errors <= self.reads:
            raise InvalidBuckets(f"errors: must be between 0 and reads ({self.reads})")


@dataclass(frozen=True)
class OriginSummary:
    """One origin's reads over a window (at least one); latencies in seconds."""

    origin: ReadOrigin
    reads: int
    errors: int
    mean_seconds: float
    p50: float
    p95: float
    p99: float

    @property
    def error_rate(self) -> float:
        """Errors per read, 0 to 1."""
        return self.errors / self.reads


def quantile(counts: Sequence[int], q: float) -> float:
    """Estimate the q-quantile (0 < q < 1) of latencies bucketed by LATENCY_BOUNDS, as
    Prometheus's histogram_quantile does: linear within the bucket that holds the rank, from 0
    for the first; the last bound when the rank is in the bucket above every bound."""
    if not 0 < q < 1:
        raise ValueError(f"q: must be between 0 and 1 exclusive, got {q}")
    total = sum(counts)
    if total <= 0:
        raise InvalidBuckets("counts: no reads to estimate from")
    rank = q * total
    below = 0
    for index, count in enumerate(counts):
        if below + count >= rank and count > 0:
            if index == len(LATENCY_BOUNDS):
                return LATENCY_BOUNDS[-1]
            lower = LATENCY_BOUNDS[index - 1] if index else 0.0
            upper = LATENCY_BOUNDS[index]
            return lower + (upper - lower) * (rank - below) / count
        below += count
    raise AssertionError("unreachable: the ranks add up to the total")


def summarise(buckets: Iterable[OriginBucket]) -> tuple[OriginSummary, ...]:
    """Per origin (in ReadOrigin's order, only those with reads), the reads, errors, mean and
    p50/p95/p99 of every bucket given: merging buckets first gives the same answer."""
    merged: dict[ReadOrigin, tuple[int, int, float, list[int]]] = {}
    for bucket in buckets:
        reads, errors, latency_sum, counts = merged.get(bucket.origin, (0, 0, 0.0, [0] * BUCKETS))
        merged[bucket.origin] = (
            reads + bucket.reads,
            errors + bucket.errors,
            latency_sum + bucket.latency_sum,
            [a + b for a, b in zip(counts, bucket.latency_buckets, strict=True)],
        )
    summaries = []
    for origin in ReadOrigin:
        if origin not in merged or merged[origin][0] == 0:
            continue
        reads, errors, latency_sum, counts = merged[origin]
        p50, p95, p99 = (quantile(counts, q) for q in QUANTILES)
        summaries.append(
            OriginSummary(origin, reads, errors, latency_sum / reads, p50=p50, p95=p95, p99=p99)
        )
    return tuple(summaries)
