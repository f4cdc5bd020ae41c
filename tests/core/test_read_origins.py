"""The summary of reads by origin (app/core/read_origins.py), property-tested: totals add up,
quantiles are ordered and land in the bucket that holds the true quantile, and merging or
reordering minutes changes nothing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.read_origins import (
    BUCKETS,
    LATENCY_BOUNDS,
    InvalidBuckets,
    OriginBucket,
    ReadOrigin,
    latency_bucket,
    quantile,
    summarise,
)

latencies = st.one_of(
    st.floats(min_value=0, max_value=30, allow_nan=False),
    st.sampled_from(LATENCY_BOUNDS),  # exactly on a bound: `le`, so in that bucket
)


def bucket_of(origin: ReadOrigin, reads: Sequence[tuple[float, bool]]) -> OriginBucket:
    """What a recorder builds from these reads (latency, failed)."""
    counts = [0] * BUCKETS
    for seconds, _failed in reads:
        counts[latency_bucket(seconds)] += 1
    return OriginBucket(
        origin,
        reads=len(reads),
        errors=sum(failed for _, failed in reads),
        latency_sum=sum(seconds for seconds, _ in reads),
        latency_buckets=tuple(counts),
    )


minutes = st.lists(
    st.builds(
        bucket_of,
        st.sampled_from(ReadOrigin),
        st.lists(st.tuples(latencies, st.booleans()), max_size=20),
    ),
    max_size=12,
)


def true_quantile(values: Sequence[float], q: float) -> float:
    """The smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def bucket_range(index: int) -> tuple[float, float]:
    lower = LATENCY_BOUNDS[index - 1] if index else 0.0
    upper = LATENCY_BOUNDS[index] if index < len(LATENCY_BOUNDS) else LATENCY_BOUNDS[-1]
    return lower, upper


@given(minutes)
def test_summary_counts_every_read_and_error_of_each_origin(buckets: list[OriginBucket]) -> None:
    summaries = {s.origin: s for s in summarise(buckets)}
    for origin in ReadOrigin:
        reads = sum(b.reads for b in buckets if b.origin is origin)
        errors = sum(b.errors for b in buckets if b.origin is origin)
        if reads == 0:
            assert origin not in summaries, "an origin without reads is left out"
            continue
        summary = summaries[origin]
        assert (summary.reads, summary.errors) == (reads, errors)
        assert 0 <= summary.error_rate <= 1
        assert summary.error_rate == errors / reads
    assert [s.origin for s in summarise(buckets)] == [o for o in ReadOrigin if o in summaries]


@given(st.lists(latencies, min_size=1, max_size=200), st.sampled_from((0.5, 0.95, 0.99)))
def test_a_quantile_lands_in_the_bucket_of_the_true_quantile(values: list[float], q: float) -> None:
    counts = [0] * BUCKETS
    for seconds in values:
        counts[latency_bucket(seconds)] += 1
    estimate = quantile(counts, q)
    lower, upper = bucket_range(latency_bucket(true_quantile(values, q)))
    assert lower <= estimate <= upper


@given(minutes)
def test_p50_p95_p99_are_ordered_and_within_the_bounds(buckets: list[OriginBucket]) -> None:
    for summary in summarise(buckets):
        assert 0 <= summary.p50 <= summary.p95 <= summary.p99 <= LATENCY_BOUNDS[-1]
        assert summary.mean_seconds >= 0


@given(minutes, st.randoms(use_true_random=False))
def test_merging_or_reordering_minutes_gives_the_same_summary(
    buckets: list[OriginBucket], random: Random
) -> None:
    shuffled = list(buckets)
    random.shuffle(shuffled)
    merged = []
    for origin in ReadOrigin:
        mine = [b for b in buckets if b.origin is origin]
        if mine:
            merged.append(
                OriginBucket(
                    origin,
                    reads=sum(b.reads for b in mine),
                    errors=sum(b.errors for b in mine),
                    latency_sum=sum(b.latency_sum for b in mine),
                    latency_buckets=tuple(
                        map(sum, zip(*(b.latency_buckets for b in mine), strict=True))
                    ),
                )
            )
    for one, other in (
        (summarise(buckets), summarise(shuffled)),
        (summarise(buckets), summarise(merged)),
    ):
        assert [(s.origin, s.reads, s.errors, s.p50, s.p95, s.p99) for s in one] == [
            (s.origin, s.reads, s.errors, s.p50, s.p95, s.p99) for s in other
        ]
        for a, b in zip(one, other, strict=True):
            assert math.isclose(a.mean_seconds, b.mean_seconds, rel_tol=1e-9, abs_tol=1e-12)


def test_a_read_on_a_bound_counts_in_that_bound_s_bucket() -> None:
    assert latency_bucket(LATENCY_BOUNDS[0]) == 0
    assert latency_bucket(LATENCY_BOUNDS[0] * 1.0001) == 1
    assert latency_bucket(LATENCY_BOUNDS[-1] + 1) == BUCKETS - 1


def test_quantile_interpolates_within_the_bucket_as_prometheus_does() -> None:
    counts = [0] * BUCKETS
    counts[latency_bucket(0.02)] = 4  # four reads in (0.01, 0.025]
    assert quantile(counts, 0.5) == pytest.approx(0.01 + 0.015 * 0.5)
    counts = [0] * BUCKETS
    counts[-1] = 1  # above every bound: the last bound, as histogram_quantile says
    assert quantile(counts, 0.99) == LATENCY_BOUNDS[-1]


@pytest.mark.parametrize(
    ("reads", "errors", "counts"),
    [
        (1, 0, (1,)),  # another bucket layout
        (2, 0, (1,) + (0,) * (BUCKETS - 1)),  # counts do not add up to the reads
        (1, 2, (1,) + (0,) * (BUCKETS - 1)),  # more errors than reads
    ],
)
def test_inconsistent_buckets_are_refused(reads: int, errors: int, counts: tuple[int, ...]) -> None:
    with pytest.raises(InvalidBuckets):
        OriginBucket(ReadOrigin.JSONB, reads, errors, 0.0, counts)
