"""How an enrichment run behaves: one set of knobs shared by the fetcher and the writes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnrichOptions:
    """How a run behaves; the retry and timeout knobs are small so that tests stay fast."""

    # Objects read at once. Each read waits about one round trip (30 ms to R2 from the
    # bench's stand-in): 16 at once keep ahead of the batched writes (docs/benchmarks.md).
    concurrency: int = 16
    max_rate: float | None = None  # HTTP requests per second, across the whole run
    dry_run: bool = False
    retry_failed: bool = False
    batch_products: int = 100  # products read, fetched and written (one transaction) at once
    # The first range: a PNG, GIF or plain JPEG header is in its first KiB; a JPEG with
    # large metadata before its size marker is read again, wider (4x, then more).
    head_bytes: int = 16 * 1024
    max_head_bytes: int = 16 * 1024 * 1024  # a WebP is read whole by Pillow
    timeout: float = 10.0  # seconds per request: connect, each read, and in total
    retries: int = 3  # after the first try, on 429, 5xx, timeouts and connection errors
    backoff_base: float = 0.25
    backoff_cap: float = 8.0
    max_redirects: int = 2
    lock_timeout_ms: int = 2000
