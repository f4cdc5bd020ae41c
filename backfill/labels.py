"""The label report: what the rule flags (before) against what the table holds (after)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import psycopg.errors
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError

from app.core.database import quoted_schema, tenant_schema
from backfill.projection import sql


@dataclass(frozen=True)
class LabelReport:
    """One tenant's label counts (or the total over tenants, with tenant_id None)."""

    tenant_id: int | None
    legacy_products: int = 0
    rule_labels: int = 0
    review_single_image: int = 0
    legacy_without_images: int = 0
    migrated_products: int = 0
    table_labels: int = 0
    labels_outside_rule: int = 0
    legacy_unlabelled_in_table: int = 0


COUNTS = tuple(f.name for f in fields(LabelReport) if f.name != "tenant_id")


@dataclass(frozen=True)
class ContractedLabelReport:
    """A contracted tenant's label counts: the table only (the rule's JSONB is gone)."""

    tenant_id: int
    legacy_products: int = 0
    migrated_products: int = 0
    table_labels: int = 0
    labels_outside_rule: int = 0


CONTRACTED_COUNTS = tuple(f.name for f in fields(ContractedLabelReport) if f.name != "tenant_id")


def contracted_label_reports(
    engine: Engine, tenant_ids: Sequence[int], legacy_sources: Sequence[str]
) -> list[ContractedLabelReport]:
    """What the table of each contracted tenant holds, in the label report's terms."""
    reports = []
    with engine.connect() as connection:
        for tenant_id in tenant_ids:
            connection.execute(
                text(f"SET search_path TO {quoted_schema(tenant_schema(tenant_id))}, public")
            )
            row = connection.execute(
                text(sql("label_report_contracted")), {"legacy_sources": list(legacy_sources)}
            ).one()
            reports.append(
                ContractedLabelReport(
                    tenant_id, **{n: int(getattr(row, n)) for n in CONTRACTED_COUNTS}
                )
            )
            connection.rollback()
    return reports


def label_reports(
    engine: Engine,
    tenant_ids: Sequence[int],
    legacy_sources: Sequence[str],
    *,
    skip_contracted: bool = False,
) -> list[LabelReport]:
    """One report per tenant, then the total. The rule reads `products.images`: with
    `skip_contracted`, a tenant whose column is gone by the time it is read (contracted
    meanwhile) is left out instead of failing the whole report."""
    reports = []
    with engine.connect() as connection:
        for tenant_id in tenant_ids:
            connection.execute(
                text(f"SET search_path TO {quoted_schema(tenant_schema(tenant_id))}, public")
            )
            try:
                row = connection.execute(
                    text(sql("label_report")), {"legacy_sources": list(legacy_sources)}
                ).one()
            except ProgrammingError as exc:
                if not (skip_contracted and isinstance(exc.orig, psycopg.errors.UndefinedColumn)):
                    raise
                connection.rollback()
                continue
            reports.append(LabelReport(tenant_id, **{n: int(getattr(row, n)) for n in COUNTS}))
            # Per tenant: one transaction over 1,000 schemas runs out of locks.
            connection.rollback()
    total = LabelReport(None, **{n: sum(getattr(r, n) for r in reports) for n in COUNTS})
    return [*reports, total]
