"""The sweep (`python -m app sweep-media`): per tenant, list the stored objects under
`t<id>/`, set the tenant's usage count to what is stored, and remove the objects past a
grace period that nothing references (through MediaLifecycle.remove_keys: the same lock
and check as the removal after a request)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine, text

from app.core.database import tenant_schema, unit_of_work
from app.repositories import stored_media
from app.services.media_gc import MediaLifecycle, Removal
from app.storage.ownership import tenant_prefix

log = structlog.get_logger(__name__)

# Objects removed per transaction: each holds one advisory lock per key until it commits
# (the lock table has room for a few thousand across the whole server).
SWEEP_BATCH = 500


class SweepBusy(Exception):
    """Another sweep of the same tenant is running."""


class SweepNotReady(Exception):
    """The tenant's schema has no media usage counter yet (not migrated to head)."""


@dataclass(frozen=True)
class SweepReport:
    """One tenant's sweep: what was listed, kept (and why), removed, and the usage count."""

    tenant_id: int
    dry_run: bool
    listed: int
    listed_bytes: int
    young: int  # within the grace period: maybe an upload whose image has not committed
    usage_before: int  # the counter before the sweep
    usage_after: int  # reconciled with the listing, less what was removed
    removal: Removal = field(default_factory=Removal)


def sweep(
    media: MediaLifecycle,
    engine: Engine,
    tenant_id: int,
    *,
    now: datetime,
    grace: timedelta,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SweepReport:
    """List the tenant's objects, set its usage counter to what is stored, and remove
    the objects older than `grace` that nothing references (`dry_run`: count them,
    change nothing). `progress` hears of the objects listed as the listing goes."""
    advance = progress or (lambda _n: None)
    with _one_sweep_per_tenant(engine, tenant_id):
        with unit_of_work(engine, tenant_id) as session:
            if not stored_media.has_usage(session):
                raise SweepNotReady(
                    f"tenant {tenant_id}: no media_usage table (run alembic upgrade head)"
                )
            counted_before = stored_media.usage(session)
        listed = []
        for found in media.storage.list_objects(tenant_prefix(tenant_id)):
            listed.append(found)
            advance(1)
        listed_bytes = sum(found.size for found in listed)
        reconciled = listed_bytes
        if not dry_run:
            with unit_of_work(engine, tenant_id) as session:
                reconciled = stored_media.reconcile(
                    session, counted_before=counted_before, listed=listed_bytes
                )
        # An upload stores its object before its image commits: young objects wait.
        old = [found.key for found in listed if found.modified <= now - grace]
        with unit_of_work(engine, tenant_id) as session:
            referenced = stored_media.referenced_keys(session, old)
        removal = Removal(referenced=len(referenced))
        for batch in _batches([key for key in old if key not in referenced]):
            # Checked again under the locks: an attach may have committed meanwhile.
            removal += media.remove_keys(engine, tenant_id, batch, dry_run=dry_run)
    report = SweepReport(
        tenant_id=tenant_id,
        dry_run=dry_run,
        listed=len(listed),
        listed_bytes=listed_bytes,
        young=len(listed) - len(old),
        usage_before=counted_before,
        usage_after=max(reconciled - removal.freed_bytes, 0),
        removal=removal,
    )
    log.info(
        "media.swept",
        tenant=tenant_id,
        dry_run=dry_run,
        listed=report.listed,
        young=report.young,
        referenced=removal.referenced,
        removed=len(removal.removed),
        freed_bytes=removal.freed_bytes,
        failed=len(removal.failed),
        usage_before=report.usage_before,
        usage_after=report.usage_after,
    )
    return report


@contextmanager
def _one_sweep_per_tenant(engine: Engine, tenant_id: int) -> Iterator[None]:
    """A session-level advisory lock for the sweep's whole run: two sweeps of one tenant
    would both correct its counter by the same difference. Released by PostgreSQL if the
    process dies."""
    key = f"media-sweep:{tenant_schema(tenant_id)}"
    with engine.connect() as connection:
        got = connection.execute(
            text("SELECT pg_try_advisory_lock(hashtextextended(:key, 0))"), {"key": key}
        ).scalar_one()
        connection.commit()
        if not got:
            raise SweepBusy(f"tenant {tenant_id} is being swept by another process")
        try:
            yield
        finally:
            connection.execute(
                text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))"), {"key": key}
            )
            connection.commit()


def _batches(keys: Sequence[str]) -> Iterator[Sequence[str]]:
    """The keys, SWEEP_BATCH at a time."""
    for start in range(0, len(keys), SWEEP_BATCH):
        yield keys[start : start + SWEEP_BATCH]
