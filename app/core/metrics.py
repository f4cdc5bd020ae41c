"""Prometheus metrics of the migration (GET /metrics). Labels stay low-cardinality: no tenant
label, since thousands of tenants would make thousands of series per metric (per-tenant read
figures live in public.read_origin_stats, for the console: app/services/read_origins.py).

Several uvicorn workers: `python -m app serve --workers N` sets PROMETHEUS_MULTIPROC_DIR, each
process then writes its values to files there, and `registry()` collects every process's.
A gauge, if one is added, must say how processes combine (`multiprocess_mode=...`)."""

from __future__ import annotations

import atexit
import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess

from app.core.read_origins import LATENCY_BOUNDS

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

IMAGE_READS = Counter(
    "product_images_reads_total", "Image list reads, by the representation that answered", ["path"]
)
INTERLOCK_REFUSALS = Counter(
    "product_images_interlock_refusals_total",
    "read-table requests refused (tenant not verified, or dual-write off)",
)
IMAGE_WRITES = Histogram(
    "product_images_write_seconds",
    "Image mutations, lock to flush, by whether the table was written too",
    ["dual_write"],
)
SHADOW_COMPARISONS = Counter(
    "product_images_shadow_comparisons_total",
    "Shadow reads: both representations compared in one snapshot, by outcome",
    ["outcome"],
)
SHADOW_MISMATCHES = Counter(
    "product_images_shadow_mismatches_total",
    "Differences found by shadow reads, by kind (missing, extra, reordered, ...)",
    ["kind"],
)
DRIFT_FALLBACKS = Counter(
    "product_images_drift_fallbacks_total",
    "Tenants whose verified state was cleared by a drift (reads went back to the JSONB)",
    ["found_by"],
)
IMAGE_READ_SECONDS = Histogram(
    "product_images_read_seconds",
    "Image list reads, resolution to answer, failed ones included, by the read path the "
    "tenant's stage chose (jsonb, table, shadow)",
    ["origin"],
    buckets=LATENCY_BOUNDS,
)
IMAGE_READ_ERRORS = Counter(
    "product_images_read_errors_total",
    "Image list reads that failed (a database error, a bug; not an unknown product), by origin",
    ["origin"],
)


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode, or None when this process exports only its own."""
    return os.environ.get(MULTIPROC_DIR) or None


def registry() -> CollectorRegistry:
    """What /metrics exports: every process's values (from the files of multiprocess mode,
    live and dead workers alike, so counters never go back), else this process's registry."""
    directory = multiprocess_dir()
    if directory is None:
        return REGISTRY
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected, path=directory)  # type: ignore[no-untyped-call]
    return collected


def sample_value(name: str, labels: dict[str, str] | None = None) -> float:
    """One sample's value as /metrics would export it (0 when it has none yet): for pages
    that show a metric, instead of reading a metric object's private value."""
    return registry().get_sample_value(name, labels or {}) or 0.0


def _mark_this_process_dead() -> None:
    # uvicorn's supervisor has no child-exit hook (gunicorn's `child_exit`): each worker does
    # this bookkeeping itself as it exits. It only drops `live*` gauges' files; a worker that
    # is killed leaves them, which matters to no metric here (there is no gauge).
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


if multiprocess_dir() is not None:
    atexit.register(_mark_this_process_dead)
