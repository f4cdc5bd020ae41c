"""Prometheus metrics of the migration (GET /metrics). Labels stay low-cardinality: no tenant
label, since thousands of tenants would make thousands of series per metric."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
