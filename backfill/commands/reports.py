"""`backfill report labels|rejected|metadata`, `audit-publications` and `apply-overrides`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from app.composition import build
from app.core.settings import get_settings
from backfill import status as status_queries
from backfill.commands.common import (
    TenantOption,
    chosen_tenants,
    console,
    open_engine,
)
from backfill.tenants import (
    is_contracted,
    is_ready,
    select_tenants,
)


def report_labels(tenant: TenantOption = None) -> None:
    """What the label rule flags (JSONB, before) and what the table holds (after)."""
    from backfill.labels import (
        CONTRACTED_COUNTS,
        COUNTS,
        contracted_label_reports,
        label_reports,
    )

    engine = open_engine()
    tenants = [t for t in chosen_tenants(engine, tenant) if is_ready(engine, t)]
    contracted = [t for t in tenants if is_contracted(engine, t)]
    tenants = [t for t in tenants if t not in contracted]
    sources = get_settings().legacy_sources
    reports = label_reports(engine, tenants, sources, skip_contracted=True)
    table_only = contracted_label_reports(engine, contracted, sources)
    engine.dispose()
    out = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title="labels: rule (before) and table (after)")
    table.add_column("tenant")
    for name in COUNTS:
        table.add_column(name.replace("_", " "), justify="right")
    for row in reports:
        table.add_row(
            str(row.tenant_id) if row.tenant_id is not None else "total",
            *(str(getattr(row, name)) for name in COUNTS),
        )
    out.print(table)
    if table_only:
        shown = Table(title="contracted tenants: the table only (the rule's JSONB is gone)")
        shown.add_column("tenant")
        for name in CONTRACTED_COUNTS:
            shown.add_column(name.replace("_", " "), justify="right")
        for contracted_row in table_only:
            shown.add_row(
                str(contracted_row.tenant_id),
                *(str(getattr(contracted_row, name)) for name in CONTRACTED_COUNTS),
            )
        out.print(shown)


def apply_overrides_command(
    path: Annotated[Path, typer.Argument(help="CSV: tenant,product_id,url,is_label")],
) -> None:
    """Correct the label rule: set or clear labels from a CSV, in both representations."""
    from backfill.overrides import OverridesFileInvalid, apply_overrides, read_overrides

    try:
        overrides = read_overrides(path)
    except OverridesFileInvalid as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    engine = open_engine()
    unknown = {o.tenant_id for o in overrides} - set(select_tenants(engine, None))
    if unknown:
        console.print(
            f"[red]tenant: no tenant with id {', '.join(map(str, sorted(unknown)))}[/red]"
        )
        raise typer.Exit(2)
    services = build(get_settings(), engine)
    services.flags.wait_until_ready(10.0)  # the kill switch holds here too
    outcomes = apply_overrides(engine, overrides, services.images)
    services.close()
    engine.dispose()
    failed = [o for o in outcomes if not o.applied]
    console.print(f"{len(outcomes) - len(failed)} override(s) applied, {len(failed)} refused")
    for outcome in failed:
        o = outcome.override
        console.print(
            f"  line {o.line}: tenant {o.tenant_id} product {o.product_id}: {outcome.reason}"
        )
    if failed:
        raise typer.Exit(1)


def audit_publications(tenant: TenantOption = None) -> None:
    """Build every product's Vinted, eBay and Etsy payload under each tenant's current read
    stage and count the products whose payload would carry a label (by id or by URL). Exit 1
    if any, and also if a product with images got no payload because a rule refused its
    photos (http URLs, a type, a size): the audit proves nothing for it. A product with
    nothing but its label (or no image) has nothing to publish and is not a refusal."""
    from collections import Counter

    from backfill.audit import audit_tenant

    engine = open_engine()
    tenants = [t for t in chosen_tenants(engine, tenant) if is_ready(engine, t)]
    services = build(get_settings(), engine)
    flags = services.flags
    if not flags.wait_until_ready(10.0):
        console.print(f"[yellow]flags: {flags.source} did not answer; using the defaults[/yellow]")
    service, by_name = services.images, services.converters
    audits = []
    with Progress(
        TextColumn("audit"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("tenants", total=len(tenants))
        for tenant_id in tenants:
            audits.append(audit_tenant(engine, tenant_id, service, by_name))
            bar.advance(task)
    services.close()
    engine.dispose()
    table = Table(title="labels that would be published, per marketplace")
    table.add_column("tenant")
    table.add_column("products", justify="right")
    table.add_column("with a label", justify="right")
    table.add_column("read path")
    for name in by_name:
        table.add_column(f"{name} leaking", justify="right")
        table.add_column(f"{name} no photo", justify="right")
    for audit in audits:
        table.add_row(
            str(audit.tenant_id),
            str(audit.products),
            str(audit.labelled_products),
            ", ".join(f"{path} {n}" for path, n in sorted(audit.read_paths.items())),
            *(
                value
                for m in audit.marketplaces.values()
                for value in (str(m.leaking), str(m.unpublishable))
            ),
        )
    totals = {
        name: (
            sum(a.marketplaces[name].leaking for a in audits),
            sum(a.marketplaces[name].unpublishable for a in audits),
        )
        for name in by_name
    }
    table.add_row(
        "total",
        str(sum(a.products for a in audits)),
        str(sum(a.labelled_products for a in audits)),
        "",
        *(str(v) for pair in totals.values() for v in pair),
    )
    out = Console(width=None if sys.stdout.isatty() else 250)
    out.print(table)
    leaking = sum(leak for leak, _ in totals.values())
    if services.settings.marketplace_allow_http:
        out.print("MARKETPLACE_ALLOW_HTTP is on: http photo URLs were accepted (demo only)")
    refused = sum(a.refused for a in audits)
    for name in by_name:
        results = [a.marketplaces[name] for a in audits]
        count = sum(m.refused for m in results)
        if not count:
            continue
        reasons: Counter[str] = sum((m.refusal_reasons for m in results), Counter())
        examples = sorted({p for m in results for p in m.refused_sample})[:20]
        out.print(
            f"{name}: {count} product(s) with images got no payload, their photos refused ("
            + "; ".join(f"{reason}: {n}" for reason, n in reasons.most_common())
            + f"); products for example: {', '.join(map(str, examples))}"
        )
    if leaking:
        sample = sorted(
            {p for a in audits for m in a.marketplaces.values() for p in m.leaking_sample}
        )
        out.print(
            f"{leaking} payload(s) would publish a label; products for example: "
            f"{', '.join(map(str, sample[:20]))}"
        )
    if refused:
        out.print(
            f"{refused} payload(s) could not be built for products with images: the audit "
            "proves nothing for them until their photos pass the marketplaces' rules"
        )
    if leaking or refused:
        raise typer.Exit(1)
    out.print("no payload would publish a label")


def report_rejected(tenant: TenantOption = None) -> None:
    """Per tenant: the JSONB elements the table could not hold, counted by reason; then the
    first 200 of them with the product, position, reason, detail and the raw element."""
    engine = open_engine()
    tenants = [t for t in chosen_tenants(engine, tenant) if is_ready(engine, t)]
    counts, listed = status_queries.rejected_elements(engine, tenants)
    engine.dispose()
    out = Console(width=None if sys.stdout.isatty() else 200)
    by_reason = Table(title="rejected elements by reason")
    for column in ("tenant", "reason", "elements"):
        by_reason.add_column(column)
    for (tenant_id, reason), n in sorted(counts.items()):
        by_reason.add_row(str(tenant_id), reason, str(n))
    by_reason.add_row("total", "", str(sum(counts.values())))
    out.print(by_reason)
    shown = Table(title="rejected elements (first 200)")
    for column in ("tenant", "product", "position", "reason", "detail", "raw"):
        shown.add_column(column)
    for element in listed:
        shown.add_row(
            str(element.tenant_id),
            str(element.product_id),
            str(element.position),
            element.reason,
            element.detail,
            element.raw,
        )
    out.print(shown)


def report_metadata(tenant: TenantOption = None) -> None:
    """Per tenant: images with their metadata complete, pending, and failed by reason; then
    the failed images (the enrichment's `image_metadata_failures`)."""
    from backfill.enrich import metadata_report

    engine = open_engine()
    tenants = [t for t in chosen_tenants(engine, tenant) if is_ready(engine, t)]
    rows, failures = metadata_report(engine, tenants)
    engine.dispose()
    out = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title="image metadata")
    for column in ("tenant", "complete", "pending", "failed", "failed by reason"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.tenant_id),
            str(row.complete),
            str(row.pending),
            str(row.failed),
            ", ".join(f"{reason} {n}" for reason, n in sorted(row.reasons.items())),
        )
    out.print(table)
    listed = Table(title="failed images (latest 200)")
    for column in ("tenant", "product", "image", "reason", "detail", "attempts", "url"):
        listed.add_column(column)
    for failure in failures[:200]:
        listed.add_row(*(str(value) for value in failure))
    out.print(listed)
