"""What the console shows, read from the same functions the CLI and the API use
(backfill.status, flags.stages.resolve through tenant_facts, the shadow sample, the label
report): one source of truth, no second implementation of stages or counts."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from app.console.refresh import Refreshing
from app.core.database import quoted_schema, tenant_schema
from app.repositories.migration_state import runs
from backfill.labels import LabelReport, label_reports
from backfill.status import TenantStatus, schema_catalog, tenant_status
from backfill.tenants import select_tenants
from flags.stages import Flags, Resolution, Stage, resolve

STAGES = [stage.value for stage in Stage]
FlagsFor = Callable[[int], Flags]


@dataclass(frozen=True)
class TenantRow:
    """One tenant as the console lists it."""

    status: TenantStatus
    resolution: Resolution
    flags: Flags

    @property
    def tenant_id(self) -> int:
        return self.status.tenant_id

    @property
    def stage(self) -> str:
        return self.resolution.stage.value

    @property
    def mismatches_last_hour(self) -> int:
        return self.status.mismatches_last_hour


@dataclass
class Overview:
    """The migration at a glance."""

    tenants: int = 0
    by_stage: Counter[str] = field(default_factory=Counter)
    images_total: int = 0
    images_done: int = 0
    rejected: int = 0
    mismatches_last_hour: int = 0
    running: list[TenantRow] = field(default_factory=list)
    rate: float = 0.0

    @property
    def percent(self) -> float:
        return 100.0 * self.images_done / self.images_total if self.images_total else 100.0

    @property
    def eta_seconds(self) -> float | None:
        left = self.images_total - self.images_done
        return left / self.rate if self.running and self.rate > 0 else None


def tenant_rows(
    engine: Engine, flags_for: FlagsFor, tenant_ids: Sequence[int] | None = None
) -> list[TenantRow]:
    """Every migrated tenant (or those given) with its stage (the CLI's resolution, from
    the facts `tenant_status` reads in one statement per page of tenants) and counts."""
    rows = []
    for status in tenant_status(engine, select_tenants(engine, tenant_ids)):
        flags = flags_for(status.tenant_id)
        rows.append(TenantRow(status, resolve(status.facts, flags), flags))
    return rows


def overview(rows: Sequence[TenantRow]) -> Overview:
    summary = Overview(tenants=len(rows))
    for row in rows:
        summary.by_stage[row.stage] += 1
        summary.images_total += row.status.jsonb_images
        summary.images_done += min(
            row.status.jsonb_images, row.status.table_rows + row.status.rejected
        )
        summary.rejected += row.status.rejected
        summary.mismatches_last_hour += row.mismatches_last_hour
        if row.status.last_run_status == "running":
            summary.running.append(row)
            summary.rate += row.status.last_run_rate or 0.0
    return summary


def filtered(
    rows: Sequence[TenantRow], *, stage: str | None, sort: str, descending: bool
) -> list[TenantRow]:
    keys: dict[str, Callable[[TenantRow], Any]] = {
        "tenant": lambda r: r.tenant_id,
        "stage": lambda r: STAGES.index(r.stage),
        "products": lambda r: r.status.products,
        "images": lambda r: r.status.jsonb_images,
        "migrated": lambda r: r.status.migrated_percent,
        "mismatches": lambda r: r.mismatches_last_hour,
    }
    chosen = [r for r in rows if stage is None or r.stage == stage]
    key = keys.get(sort, keys["tenant"])
    if sort == "verified":
        return sorted(
            chosen,
            key=lambda r: (r.status.verified_at is not None, r.status.verified_at or 0),
            reverse=descending,
        )
    return sorted(chosen, key=key, reverse=descending)


def replaced(
    rows: Sequence[TenantRow], fresh: Sequence[TenantRow], tenant_ids: Sequence[int]
) -> list[TenantRow]:
    """`rows` with the given tenants' rows swapped for `fresh` ones (a tenant asked for and
    not in `fresh` is no longer listed), in tenant order."""
    asked = set(tenant_ids)
    kept = {r.tenant_id: r for r in rows if r.tenant_id not in asked}
    kept.update((r.tenant_id, r) for r in fresh)
    return [kept[t] for t in sorted(kept)]


class RowCache:
    """The tenants' rows and the label totals the console's pages and pollers share.

    Served from memory and refreshed in the background (`Refreshing`): rows at most once a
    second (less often when a refresh is slow: 1,000 tenants take about a second, see
    docs/benchmarks.md), label totals every 30 s. An action on one tenant reads that
    tenant's row at once and patches it in; an action on every tenant drops the rows so
    the next view reads them all."""

    def __init__(
        self,
        engine: Engine,
        flags_for: FlagsFor,
        legacy_sources: Sequence[str] = ("pythonApiWOO",),
        *,
        min_age: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._flags_for = flags_for
        self._legacy_sources = tuple(legacy_sources)
        self._rows = Refreshing(
            lambda: tenant_rows(engine, flags_for), name="tenant-rows", min_age=min_age, clock=clock
        )
        self._labels = Refreshing(
            self._label_totals, name="label-totals", min_age=30 * min_age, clock=clock
        )

    def _label_totals(self) -> LabelReport:
        # The label report reads products.images: ask the catalog which tenants still have
        # it now, not the rows (a tenant contracted since they were read would fail it).
        with self._engine.connect() as connection:
            jsonb = [
                s.tenant_id
                for s in schema_catalog(connection, [r.tenant_id for r in self.rows()])
                if s.ready and s.has_images_column
            ]
        # skip_contracted: a tenant contracted during the count (`contract --all` takes
        # them one after another) is left out, not a failure of the whole count.
        return label_reports(self._engine, jsonb, self._legacy_sources, skip_contracted=True)[-1]

    def rows(self) -> list[TenantRow]:
        return self._rows.get()

    def labels(self) -> LabelReport | None:
        """The label totals, or None while they are first counted (a few seconds at 1,000
        tenants: the overview shows them on a later view instead of waiting)."""
        return self._labels.peek()

    def age(self) -> float:
        """Seconds since the rows served were read."""
        return self._rows.age()

    @property
    def error(self) -> str | None:
        """Why the last background refresh failed (the rows shown are older), if it did."""
        return self._rows.error

    @property
    def labels_error(self) -> str | None:
        """Why the last count of the label totals failed, if it did."""
        return self._labels.error

    def read_tenants(self, tenant_ids: Sequence[int]) -> list[TenantRow]:
        """These tenants' rows read now, patched into the rows in memory, and returned."""
        read_at = self._rows.now()
        fresh = tenant_rows(self._engine, self._flags_for, tenant_ids)
        self._rows.update(lambda rows: replaced(rows, fresh, tenant_ids), read_at)
        return fresh

    def invalidate(self) -> None:
        self._rows.invalidate()

    def wait(self, timeout: float | None = None) -> bool:
        """Let the background refreshes in flight finish (app shutdown, tests); False if
        they had not within `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # Labels first: counting them may start a refresh of the rows.
        if not self._labels.wait(timeout):
            return False
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self._rows.wait(left)


def recent_runs(engine: Engine, tenant_id: int, limit: int = 10) -> list[dict[str, Any]]:
    schema = quoted_schema(tenant_schema(tenant_id))
    with engine.connect() as connection:
        return runs.recent(connection, schema, limit)


def rejected_elements(engine: Engine, tenant_id: int, limit: int = 50) -> list[dict[str, Any]]:
    schema = quoted_schema(tenant_schema(tenant_id))
    with engine.connect() as connection:
        return [
            dict(row)
            for row in connection.execute(
                text(
                    "SELECT product_id, position, reason, detail, raw::text AS raw "
                    f"FROM {schema}.rejected_image_elements ORDER BY product_id, position "
                    "LIMIT :n"
                ),
                {"n": limit},
            ).mappings()
        ]
