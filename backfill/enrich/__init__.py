"""The metadata enrichment: fill `product_images`' type, size, pixels and alt text from the
stored objects.

Per tenant, keyset batches of products whose images lack metadata (and have no recorded
failure, unless asked): `pending`. The first bytes of each object are read concurrently,
outside any transaction, from URLs under the storage bases only: `fetch`. Each batch's
results are then written in one transaction through `ProductImageService` (the dual-write,
each product under its row lock, in id order); an image changed since it was read is
skipped: `write`. `run` pipelines the two; `report` says where a tenant stands. A failure
is recorded per image and never stops the run.
"""

from backfill.enrich.fetch import Failed, Fetched, Fetcher, RateLimiter
from backfill.enrich.options import EnrichOptions
from backfill.enrich.pending import Pending, is_ready, lacks_metadata, pending_count
from backfill.enrich.report import MetadataCounts, metadata_report
from backfill.enrich.run import Enricher, Progress, TenantEnrichment, enrich_tenants

__all__ = [
    "EnrichOptions",
    "Enricher",
    "Failed",
    "Fetched",
    "Fetcher",
    "MetadataCounts",
    "Pending",
    "Progress",
    "RateLimiter",
    "TenantEnrichment",
    "enrich_tenants",
    "is_ready",
    "lacks_metadata",
    "metadata_report",
    "pending_count",
]
