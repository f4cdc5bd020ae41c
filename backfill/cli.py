"""`python -m backfill`: run, verify, status. Progress bars on a terminal, JSON events otherwise."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import structlog
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine

from app.composition import build
from app.core.cli_support import settings_or_exit
from app.core.database import make_engine, resolve_database_url
from app.core.settings import get_settings
from backfill import knobs
from backfill import status as status_queries
from backfill import verify as verification
from backfill.controls import RunControls, pause_toggle
from backfill.enrich_cli import enrich
from backfill.health import HealthLimits
from backfill.repair import UnknownProducts, repair_tenant
from backfill.runner import RunOptions, TenantBusy, run_tenant
from backfill.tenants import (
    UnknownTenants,
    is_contracted,
    is_ready,
    product_count,
    select_tenants,
)

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console(stderr=True)
log = structlog.get_logger("backfill")

TenantOption = Annotated[
    list[int] | None, typer.Option("--tenant", help="Tenant id (repeatable); default: all")
]
# For the steps that change a tenant's shape: no default, every tenant is named.
NamedTenantOption = Annotated[
    list[int] | None, typer.Option("--tenant", help="Tenant id (repeatable; required)")
]


def _engine() -> Engine:
    settings = settings_or_exit(console)
    return make_engine(resolve_database_url(settings), pool_size=2)


def _tenants(engine: Engine, requested: list[int] | None) -> list[int]:
    try:
        return select_tenants(engine, requested)
    except UnknownTenants as exc:
        console.print(f"[red]--tenant: {exc}[/red]")
        raise typer.Exit(2) from None


@cli.command()
def run(
    tenant: TenantOption = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, max=100_000, help="Fixed batch size (default: adaptive)")
    ] = None,
    max_rate: Annotated[
        float | None, typer.Option(min=1, help="Images per second, at most")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Do everything, keep nothing")] = False,
    yield_ratio: Annotated[
        float,
        typer.Option(
            min=0,
            max=20,
            help="While the app is busy in the database, pause this many times each "
            "batch's duration after it (0: never yield)",
        ),
    ] = 1.0,
    max_lag: Annotated[
        float,
        typer.Option(
            min=0,
            help="Wait while a standby replays more than this many seconds behind (0: never); "
            "the run also waits out a long autovacuum on the tenant's tables and a forced "
            "checkpoint",
        ),
    ] = 10.0,
) -> None:
    """Migrate every product that has no table rows yet, tenant by tenant, resumably. A
    contracted tenant is skipped; a tenant that fails is reported and the others go on (exit
    1 at the end, naming it, as for a tenant left unfinished)."""
    engine = _engine()
    tenants = _tenants(engine, tenant)
    settings = get_settings()
    options = RunOptions(
        legacy_sources=settings.legacy_sources,
        batch_size=batch_size,
        max_rate=max_rate,
        dry_run=dry_run,
        yield_ratio=yield_ratio,
        health=HealthLimits(max_replication_lag_seconds=max_lag or None),
    )
    pause = pause_toggle(settings)
    controls = RunControls(is_paused=pause.is_paused)
    unfinished: list[int] = []
    failed: list[int] = []
    totals = {"products": 0, "images": 0, "rejected": 0}
    progress = RunProgress(len(tenants), product_count(engine, tenants))
    with controls.stop_on_signals(), progress as (bar, tenants_task, products_task, images_task):

        def advance(_tenant: int, products: int, images: int) -> None:
            if bar is not None and images_task is not None and products_task is not None:
                bar.update(products_task, advance=products)
                bar.update(images_task, advance=images)

        for tenant_id in tenants:
            if controls.should_stop():
                break
            if not is_ready(engine, tenant_id):
                console.print(
                    f"[yellow]tenant {tenant_id}: not migrated to head, skipped "
                    "(run alembic upgrade head)[/yellow]"
                )
                unfinished.append(tenant_id)
                continue
            try:
                result = run_tenant(engine, tenant_id, options, controls=controls, progress=advance)
            except TenantBusy as exc:
                console.print(f"[yellow]{exc}: skipped[/yellow]")
                continue
            except Exception as exc:
                # One tenant's failure never stops the others. Its run is recorded as failed
                # (runner._run) and resumes from its checkpoint next time; KeyboardInterrupt
                # and SystemExit are not Exceptions: they still stop the whole run.
                log.error(
                    "backfill.tenant_failed",
                    tenant=tenant_id,
                    error_type=type(exc).__name__,
                    error=str(exc),
                )
                reason = (str(exc).strip().splitlines() or [""])[0]
                console.print(
                    f"[red]tenant {tenant_id}: failed ({type(exc).__name__}: {reason}); "
                    "going on with the next tenants[/red]"
                )
                failed.append(tenant_id)
                continue
            totals["products"] += result.products_scanned
            totals["images"] += result.images_inserted
            totals["rejected"] += result.rejected
            if result.status == "contracted":
                console.print(
                    f"tenant {tenant_id}: contracted (products.images dropped; the table is "
                    "the only representation), nothing to backfill: skipped"
                )
            elif result.status != "done":
                unfinished.append(tenant_id)
            if bar is not None and tenants_task is not None:
                bar.update(tenants_task, advance=1)
    engine.dispose()
    pause.close()
    verb = "would insert" if dry_run else "inserted"
    console.print(
        f"{totals['products']} products scanned, {totals['images']} images {verb}, "
        f"{totals['rejected']} elements rejected"
    )
    if controls.should_stop():
        console.print(
            "[yellow]stopped: rerun `backfill run` to resume from the checkpoint[/yellow]"
        )
        raise typer.Exit(130)
    if unfinished:
        console.print(f"[yellow]unfinished tenants: {', '.join(map(str, unfinished))}[/yellow]")
    if failed:
        console.print(f"[red]failed tenants: {', '.join(map(str, failed))}[/red]")
    if unfinished or failed:
        raise typer.Exit(1)


class RateColumn(ProgressColumn):
    """Items per second, as rich measures them."""

    def render(self, task: Task) -> Text:
        """`1234/s`, or blank before the first measure."""
        return Text(f"{task.speed:,.0f}/s" if task.speed else "", style="progress.data.speed")


class RunProgress:
    """A rich progress bar on a terminal; nothing (JSON events only) otherwise."""

    def __init__(self, tenants: int, products: int) -> None:
        self.tenants = tenants
        self.products = products
        self.bar: Progress | None = None

    def __enter__(
        self,
    ) -> tuple[Progress | None, TaskID | None, TaskID | None, TaskID | None]:
        if not console.is_terminal:
            return None, None, None, None
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.bar.__enter__()
        tenants_task = self.bar.add_task("tenants", total=self.tenants)
        products_task = self.bar.add_task("products", total=self.products)
        images_task = self.bar.add_task("images inserted", total=None)
        return self.bar, tenants_task, products_task, images_task

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _since_option(raw: str | None) -> str | None:
    """Refuse a `--since` PostgreSQL would guess at (exit 2, naming the option)."""
    if raw is None:
        return None
    try:
        return verification.checked_since(raw, datetime.now(UTC))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@cli.command()
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
) -> None:
    """Prove JSONB and table agree per tenant; record verified tenants; exit 1 on a mismatch."""
    engine = _engine()
    tenants = _tenants(engine, tenant)
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
        report = verification.verify_tenant(engine, tenant_id, since=since)
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


@cli.command()
def repair(
    tenant: TenantOption = None,
    product: Annotated[
        list[int] | None,
        typer.Option("--product", help="Product id (repeatable, one --tenant); default: drifted"),
    ] = None,
) -> None:
    """Rebuild drifted products' rows from their JSONB under their row locks (the products
    whose rows differ, and those written outside the dual-write); then run verify."""
    engine = _engine()
    tenants = _tenants(engine, tenant)
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


@cli.command()
def status(tenant: TenantOption = None) -> None:
    """Per tenant: products, images, migrated, rejected, labels, verified, last run, rate."""
    from backfill.enrich import metadata_report

    engine = _engine()
    rows = status_queries.tenant_status(engine, _tenants(engine, tenant))
    metadata = {m.tenant_id: m for m in metadata_report(engine, [r.tenant_id for r in rows])[0]}
    engine.dispose()
    table = Table(title="backfill status")
    for column in (
        "tenant",
        "products",
        "images",
        "migrated",
        "rejected",
        "labels",
        "verified",
        "last run",
        "rate/s",
        "metadata complete/pending/failed",
    ):
        table.add_column(
            column,
            justify="left" if column in ("verified", "last run", "metadata") else "right",
        )
    for row in rows:
        table.add_row(
            str(row.tenant_id),
            str(row.products),
            str(row.jsonb_images),
            f"{row.table_rows} ({row.migrated_percent:.0f}%)",
            str(row.rejected),
            str(row.labels),
            f"{row.verified_at:%Y-%m-%d %H:%M}" if row.verified_at else "no",
            f"{row.last_run_status or '-'} {row.last_run_at:%Y-%m-%d %H:%M}"
            if row.last_run_at
            else "-",
            f"{row.last_run_rate:.0f}" if row.last_run_rate else "-",
            _metadata_cell(metadata.get(row.tenant_id)),
        )
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def _metadata_cell(counts: object) -> str:
    from backfill.enrich import MetadataCounts

    if not isinstance(counts, MetadataCounts):
        return "-"
    reasons = ", ".join(f"{r} {n}" for r, n in sorted(counts.reasons.items()))
    return f"{counts.complete}/{counts.pending}/{counts.failed}" + (
        f" ({reasons})" if reasons else ""
    )


@cli.command()
def worker(
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Jobs run at once")] = 2,
) -> None:
    """Run a job-queue worker: takes tenants' backfill jobs (and retries stalled ones)."""
    from backfill.jobs import BACKFILL_QUEUE, MAINTENANCE_QUEUE, queue_app

    _engine().dispose()  # validates settings, configures logging
    queue_app().run_worker(queues=[BACKFILL_QUEUE, MAINTENANCE_QUEUE], concurrency=concurrency)


@cli.command()
def enqueue(
    tenant: TenantOption = None,
    batch_size: Annotated[int | None, typer.Option(min=1, max=100_000)] = None,
    max_rate: Annotated[float | None, typer.Option(min=1)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
) -> None:
    """Queue one backfill job per tenant for the workers; print the job ids."""
    from backfill.jobs import enqueue_backfills

    engine = _engine()
    tenants = _tenants(engine, tenant)
    engine.dispose()
    jobs = enqueue_backfills(tenants, batch_size=batch_size, max_rate=max_rate, dry_run=dry_run)
    for tenant_id, job_id in jobs.items():
        typer.echo(f"tenant {tenant_id}: " + (f"job {job_id}" if job_id else "already queued"))


cli.command("enrich")(enrich)

report = typer.Typer(no_args_is_help=True, help="Reports for operators.")
cli.add_typer(report, name="report")


@report.command("labels")
def report_labels(tenant: TenantOption = None) -> None:
    """What the label rule flags (JSONB, before) and what the table holds (after)."""
    from backfill.labels import (
        CONTRACTED_COUNTS,
        COUNTS,
        contracted_label_reports,
        label_reports,
    )

    engine = _engine()
    tenants = [t for t in _tenants(engine, tenant) if is_ready(engine, t)]
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


@cli.command()
def tune(
    tenant: Annotated[
        int | None, typer.Option("--tenant", min=1, help="One tenant; default: every tenant")
    ] = None,
    max_rate: Annotated[
        float | None, typer.Option(help="Images per second, at most, from the next batch")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(min=1, max=knobs.MAX_BATCH_SIZE, help="Fixed batch size, from the next"),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the knobs (runs go back to their options)")
    ] = False,
) -> None:
    """Change the rate or batch size of running backfills (CLI runs and workers' jobs take
    it at their next batch; a tenant's own knob wins over the every-tenant one). With no
    value: list the knobs in force."""
    engine = _engine()
    if tenant is not None:
        _tenants(engine, [tenant])
    if clear and (max_rate is not None or batch_size is not None):
        console.print("[red]--clear: give it alone, without --max-rate or --batch-size[/red]")
        raise typer.Exit(2)
    scope = knobs.scope_of(tenant)
    if clear:
        removed = knobs.clear(engine, tenant)
        console.print(f"knobs of {scope}: {'removed' if removed else 'none were set'}")
    elif max_rate is not None or batch_size is not None:
        try:
            knobs.turn(engine, tenant, max_rate=max_rate, batch_size=batch_size)
        except knobs.InvalidKnob as exc:
            console.print(f"[red]--{exc.field.replace('_', '-')}: {exc}[/red]")
            raise typer.Exit(2) from None
        log.info("backfill.knobs_turned", scope=scope, max_rate=max_rate, batch_size=batch_size)
    table = Table(title="backfill knobs (taken between batches)")
    for column in ("scope", "max rate (images/s)", "batch size"):
        table.add_column(column)
    for row in knobs.listed(engine):
        rate = f"{row.max_rate:g}" if row.max_rate is not None else "-"
        size = str(row.batch_size) if row.batch_size is not None else "-"
        table.add_row(row.scope, rate, size)
    Console().print(table)


@cli.command("apply-overrides")
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
    engine = _engine()
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


@cli.command("audit-publications")
def audit_publications(tenant: TenantOption = None) -> None:
    """Build every product's Vinted, eBay and Etsy payload under each tenant's current read
    stage and count the products whose payload would carry a label (by id or by URL). Exit 1
    if any, and also if a product with images got no payload because a rule refused its
    photos (http URLs, a type, a size): the audit proves nothing for it. A product with
    nothing but its label (or no image) has nothing to publish and is not a refusal."""
    from collections import Counter

    from backfill.audit import audit_tenant

    engine = _engine()
    tenants = [t for t in _tenants(engine, tenant) if is_ready(engine, t)]
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


@cli.command()
def backup(
    tenant: TenantOption = None,
    drop: Annotated[
        int | None, typer.Option("--drop", help="Delete this backup id (with one --tenant)")
    ] = None,
) -> None:
    """Copy each tenant's `products.id, images` into its image_backups (or list / drop one)."""
    from backfill import contract as contract_steps

    engine = _engine()
    tenants = _tenants(engine, tenant)
    if drop is not None:
        if len(tenants) != 1 or not tenant:
            console.print("[red]--tenant: --drop needs exactly one --tenant[/red]")
            raise typer.Exit(2)
        if not contract_steps.delete_backup(engine, tenants[0], drop):
            console.print(f"[red]--drop: tenant {tenants[0]} has no backup {drop}[/red]")
            raise typer.Exit(2)
        console.print(f"tenant {tenants[0]}: backup {drop} deleted")
        return
    for tenant_id in tenants:
        if not is_ready(engine, tenant_id):
            console.print(f"[yellow]tenant {tenant_id}: not migrated to head, skipped[/yellow]")
            continue
        try:
            taken = contract_steps.backup_tenant(engine, tenant_id)
        except contract_steps.ContractRefused as exc:
            console.print(f"[yellow]tenant {tenant_id}: {exc}[/yellow]")
            continue
        console.print(
            f"tenant {tenant_id}: backup {taken.id}, {taken.products} products, "
            f"{taken.elements} elements, {taken.taken_at:%Y-%m-%d %H:%M:%S}"
        )
    engine.dispose()


@cli.command()
def backups(tenant: TenantOption = None) -> None:
    """The backups each tenant holds."""
    from backfill import contract as contract_steps

    engine = _engine()
    table = Table(title="image backups")
    for column in ("tenant", "id", "taken at", "reason", "products", "elements"):
        table.add_column(column)
    for tenant_id in _tenants(engine, tenant):
        if not is_ready(engine, tenant_id):
            continue
        for b in contract_steps.list_backups(engine, tenant_id):
            table.add_row(
                str(tenant_id),
                str(b.id),
                f"{b.taken_at:%Y-%m-%d %H:%M:%S}",
                b.reason,
                str(b.products),
                str(b.elements),
            )
    engine.dispose()
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@cli.command()
def restore(
    tenant: Annotated[int, typer.Option("--tenant", help="Tenant id")],
    backup_id: Annotated[int, typer.Option("--backup", help="Backup id (see `backups`)")],
) -> None:
    """Put a backup's JSONB back (the tenant must not be contracted); clears verified."""
    from backfill import contract as contract_steps

    engine = _engine()
    _tenants(engine, [tenant])
    try:
        restored = contract_steps.restore_backup(engine, tenant, backup_id)
    except contract_steps.ContractRefused as exc:
        console.print(f"[red]--backup: {exc}[/red]")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    console.print(
        f"tenant {tenant}: {restored} product(s) restored from backup {backup_id}; the tenant "
        "is no longer verified: run `backfill repair`, then `backfill verify`"
    )


@cli.command()
def canonicalize(tenant: TenantOption = None) -> None:
    """Rewrite each verified tenant's JSONB into exactly what the table rebuilds (a backup of
    the original bytes first), so the contract can prove its downgrade gives it back."""
    from backfill import contract as contract_steps

    engine = _engine()
    refused = False
    for tenant_id in _tenants(engine, tenant):
        if not is_ready(engine, tenant_id):
            continue
        try:
            result = contract_steps.canonicalize_tenant(engine, tenant_id)
        except contract_steps.ContractRefused as exc:
            console.print(f"[yellow]tenant {tenant_id}: {exc}[/yellow]")
            refused = True
            continue
        backup_note = f", backup {result.backup.id} first" if result.backup else ""
        console.print(
            f"tenant {tenant_id}: {result.rewritten} product(s) rewritten{backup_note}, "
            f"{result.seconds:.2f} s"
        )
    engine.dispose()
    if refused:
        raise typer.Exit(1)


@cli.command()
def contract(
    tenant: Annotated[
        list[int] | None,
        typer.Option("--tenant", help="Tenant id (repeatable); or --all"),
    ] = None,
    all_tenants: Annotated[
        bool, typer.Option("--all", help="Every tenant (refused ones are listed)")
    ] = False,
) -> None:
    """Drop products.images for these tenants, behind the guards (verified, no drift,
    canonical JSONB, no long transaction) and after a backup. Same as
    `alembic -n contract -x tenant=N upgrade head`."""
    from app.core import migrate
    from migrations.tenancy import TenantMigrationFailed

    if not tenant and not all_tenants:
        console.print("[red]--tenant: give the tenants to contract, or --all[/red]")
        raise typer.Exit(2)
    engine = _engine()
    tenants = _tenants(engine, tenant)
    try:
        migrate.contract(engine, tenant_ids=tenants)
    except TenantMigrationFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    console.print(f"contracted: {', '.join(map(str, tenants))}")


@cli.command()
def uncontract(tenant: NamedTenantOption = None) -> None:
    """Re-add products.images for these tenants, rebuilt from the table with every key.
    Same as `alembic -n contract -x tenant=N downgrade base`."""
    from app.core import migrate
    from migrations.tenancy import TenantMigrationFailed

    if not tenant:
        console.print("[red]--tenant: give the tenants to uncontract[/red]")
        raise typer.Exit(2)
    engine = _engine()
    tenants = _tenants(engine, tenant)
    try:
        migrate.uncontract(engine, tenant_ids=tenants)
    except TenantMigrationFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    console.print(f"uncontracted: {', '.join(map(str, tenants))}")


@report.command("rejected")
def report_rejected(tenant: TenantOption = None) -> None:
    """Per tenant: the JSONB elements the table could not hold, counted by reason; then the
    first 200 of them with the product, position, reason, detail and the raw element."""
    engine = _engine()
    tenants = [t for t in _tenants(engine, tenant) if is_ready(engine, t)]
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


@report.command("metadata")
def report_metadata(tenant: TenantOption = None) -> None:
    """Per tenant: images with their metadata complete, pending, and failed by reason; then
    the failed images (the enrichment's `image_metadata_failures`)."""
    from backfill.enrich import metadata_report

    engine = _engine()
    tenants = [t for t in _tenants(engine, tenant) if is_ready(engine, t)]
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
