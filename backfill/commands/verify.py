"""`backfill verify` and `repair`: proving both representations agree, and mending them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from app.core.settings import get_settings
from backfill import verify as verification
from backfill.commands.common import (
    TenantOption,
    chosen_tenants,
    console,
    open_engine,
)
from backfill.repair import UnknownProducts, repair_tenant
from backfill.tenants import (
    is_contracted,
    is_ready,
)


def _since_option(raw: str | None) -> str | None:
    """Refuse a `--since` PostgreSQL would guess at (exit 2, naming the option)."""
    if raw is None:
        return None
    try:
        return verification.checked_since(raw, datetime.now(UTC))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def verify(
    tenant: TenantOption = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only products updated, or written outside the dual-write, since "
            "(ISO 8601 with a time zone, e.g. 2026-11-25T08:00:00Z)",
            callback=_since_option,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=8,
            help="Connections comparing a tenant at once, in one snapshot (1: one connection)",
        ),
    ] = verification.WORKERS,
) -> None:
    """Prove JSONB and table agree per tenant; record verified tenants; exit 1 on a mismatch."""
    engine = open_engine(pool_size=workers + 1)  # the lead and each worker: one connection
    tenants = chosen_tenants(engine, tenant)
    any_mismatch = False
    for tenant_id in tenants:
        if not is_ready(engine, tenant_id):
            console.print(
                f"[yellow]tenant {tenant_id}: not migrated to head, not verified[/yellow]"
            )
            any_mismatch = True
            continue
        if is_contracted(engine, tenant_id):
            console.print(
                f"tenant {tenant_id}: contracted (products.images dropped; the table is the "
                "only representation), nothing to compare"
            )
            continue
        report = verification.verify_tenant(engine, tenant_id, since=since, workers=workers)
        any_mismatch |= not report.is_verified or report.raced_by_drift
        _print_verification(report)
    engine.dispose()
    if any_mismatch:
        raise typer.Exit(1)


def _print_verification(report: verification.VerificationReport) -> None:
    if not report.is_verified:
        mark = "[red]NOT verified[/red]"
    elif report.since:
        mark = f"[green]clean since {report.since}[/green] (only a full verify marks verified)"
    else:
        mark = "[green]verified[/green]"
    console.print(
        f"tenant {report.tenant_id}: {mark}  products {report.products}, "
        f"JSONB elements {report.jsonb_elements} = table rows {report.table_rows} "
        f"+ rejected {report.rejected}, labels {report.labels}, "
        f"{report.seconds:.2f} s"
    )
    if report.raced_by_drift:
        console.print(
            "  [yellow]a drift was recorded while verify ran (a write outside the dual-write, "
            "the kill switch or a restore): not marked verified; run `backfill repair`, then "
            "verify again[/yellow]"
        )
    for mismatch in report.mismatches[:50]:
        console.print(f"  product {mismatch.product_id}: {mismatch.kind} {mismatch.detail}")
    if len(report.mismatches) > 50:
        console.print(f"  ... and {len(report.mismatches) - 50} more")


def repair(
    tenant: TenantOption = None,
    product: Annotated[
        list[int] | None,
        typer.Option("--product", help="Product id (repeatable, one --tenant); default: drifted"),
    ] = None,
) -> None:
    """Rebuild drifted products' rows from their JSONB under their row locks (the products
    whose rows differ, and those written outside the dual-write); then run verify."""
    engine = open_engine()
    tenants = chosen_tenants(engine, tenant)
    if product and len(tenants) != 1:
        console.print("[red]--product: give exactly one --tenant with it[/red]")
        raise typer.Exit(2)
    settings = get_settings()
    failed = False
    for tenant_id in tenants:
        if not is_ready(engine, tenant_id):
            console.print(f"[yellow]tenant {tenant_id}: not migrated to head, skipped[/yellow]")
            failed = True
            continue
        if is_contracted(engine, tenant_id):
            console.print(f"tenant {tenant_id}: contracted, no JSONB to repair from: skipped")
            continue
        try:
            result = repair_tenant(
                engine, tenant_id, legacy_sources=settings.legacy_sources, product_ids=product
            )
        except UnknownProducts as exc:
            console.print(f"[red]--product: {exc}[/red]")
            raise typer.Exit(2) from None
        console.print(
            f"tenant {tenant_id}: {len(result.products)} product(s) rebuilt from the JSONB "
            f"({result.rows_before} rows replaced by {result.rows_after}, "
            f"{result.rejected_recorded} rejected elements recorded), {result.seconds:.2f} s"
            + (f": {', '.join(map(str, result.products[:20]))}" if result.products else "")
        )
        for product_id, reason in result.failed.items():
            console.print(f"[red]  product {product_id}: not rebuilt: {reason}[/red]")
        failed |= bool(result.failed)
    engine.dispose()
    if failed:
        raise typer.Exit(1)
