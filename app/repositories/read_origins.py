"""SQL of `public.read_origin_stats` (revision 0015): each tenant's image reads per minute and
origin, added to by every app process, read back for the console, pruned by age."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from app.core.read_origins import BUCKETS, OriginBucket, ReadOrigin


@dataclass(frozen=True)
class MinuteTally:
    """One process's reads of one tenant, origin and minute, to add to the stored row."""

    tenant_id: int
    minute: datetime
    bucket: OriginBucket


# One statement for a whole flush. The rows go in key order, so two processes flushing at
# once lock shared keys in the same order and cannot deadlock. On a key another process
# already wrote, the figures are added up, the histograms element by element.
_ADD = text(
    """
    INSERT INTO public.read_origin_stats AS s
        (tenant_id, minute, origin, reads, errors, latency_sum, latency_buckets)
    SELECT tenant_id, minute, origin, reads, errors, latency_sum, latency_buckets
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
        tenant_id bigint, minute timestamptz, origin text, reads bigint, errors bigint,
        latency_sum double precision, latency_buckets bigint[]
    )
    ORDER BY tenant_id, minute, origin
    ON CONFLICT (tenant_id, minute, origin) DO UPDATE SET
        reads = s.reads + excluded.reads,
        errors = s.errors + excluded.errors,
        latency_sum = s.latency_sum + excluded.latency_sum,
        latency_buckets = ARRAY(
            SELECT mine + theirs
            FROM unnest(s.latency_buckets, excluded.latency_buckets)
                WITH ORDINALITY AS b(mine, theirs, position)
            ORDER BY position
        )
    """
)

_PRUNE = text("DELETE FROM public.read_origin_stats WHERE minute < :before")

# Rows of another bucket layout (LATENCY_BOUNDS changed within the hour) are left out.
_SINCE = text(
    """
    SELECT origin, reads, errors, latency_sum, latency_buckets
    FROM public.read_origin_stats
    WHERE tenant_id = :tenant_id AND minute >= :since AND cardinality(latency_buckets) = :n
    """
)


def add(connection: Connection, tallies: Sequence[MinuteTally]) -> None:
    """Add the tallies to the stored rows (created when missing), in one statement."""
    if not tallies:
        return
    rows = [
        {
            "tenant_id": tally.tenant_id,
            "minute": tally.minute.isoformat(),
            "origin": tally.bucket.origin.value,
            "reads": tally.bucket.reads,
            "errors": tally.bucket.errors,
            "latency_sum": tally.bucket.latency_sum,
            "latency_buckets": list(tally.bucket.latency_buckets),
        }
        for tally in tallies
    ]
    connection.execute(_ADD, {"rows": json.dumps(rows)})


def prune(connection: Connection, *, before: datetime) -> int:
    """Delete the minutes before `before`, every tenant's; how many rows went."""
    return connection.execute(_PRUNE, {"before": before}).rowcount


def buckets_since(
    connection: Connection, tenant_id: int, *, since: datetime
) -> tuple[OriginBucket, ...]:
    """The tenant's stored minutes from `since` on (`since` a whole minute), every origin."""
    result = connection.execute(_SINCE, {"tenant_id": tenant_id, "since": since, "n": BUCKETS})
    return tuple(
        OriginBucket(
            origin=ReadOrigin(row.origin),
            reads=row.reads,
            errors=row.errors,
            latency_sum=row.latency_sum,
            latency_buckets=tuple(row.latency_buckets),
        )
        for row in result
    )
