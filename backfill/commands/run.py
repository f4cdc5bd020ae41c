"""`backfill run`, `worker`, `enqueue`, `tune` and `status`: moving the history.

Over 300 lines because its commands share the tenant selection, the progress bar and the
exit codes of moving the history."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.core.settings import get_settings
from backfill import knobs
from backfill import status as status_queries
from backfill.commands.common import (
    RunProgress,
    TenantOption,
    chosen_tenants,
    console,
    log,
    open_engine,
)
from backfill.controls import RunControls, pause_toggle
from backfill.health import HealthLimits
from backfill.runner import RunOptions, TenantBusy, run_tenant
from backfill.tenants import (
    is_ready,
    product_count,
)


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
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            help="Workers per tenant, each on its own key range and connection (a new run is "
            "split into this many ranges; a resumed run keeps its own). About one per core "
            "the database can spare",
        ),
    ] = 1,
) -> None:
    """Migrate every product that has no table rows yet, tenant by tenant, resumably. A
    contracted tenant is skipped; a tenant that fails is reported and the others go on (exit
    1 at the end, naming it, as for a tenant left unfinished)."""
    engine = open_engine(pool_size=workers + 1)  # one each worker holds, one for the rest
    tenants = chosen_tenants(engine, tenant)
    settings = get_settings()
    options = RunOptions(
        legacy_sources=settings.legacy_sources,
        batch_size=batch_size,
        max_rate=max_rate,
        dry_run=dry_run,
        yield_ratio=yield_ratio,
        health=HealthLimits(max_replication_lag_seconds=max_lag or None),
        workers=workers,
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
                # (runner._run_range) and resumes from its checkpoint next time; KeyboardInterrupt
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


def status(tenant: TenantOption = None) -> None:
    """Per tenant: products, images, migrated, rejected, labels, verified, last run, rate."""
    from backfill.enrich import metadata_report

    engine = open_engine()
    chosen = chosen_tenants(engine, tenant)
    rows = status_queries.tenant_status(engine, chosen)
    metadata = {m.tenant_id: m for m in metadata_report(engine, [r.tenant_id for r in rows])[0]}
    engine.dispose()
    listed = {row.tenant_id for row in rows}
    behind = [t for t in chosen if t not in listed]
    if behind:  # said, not silently left out of the table
        console.print(
            f"[yellow]{len(behind)} tenant(s) not migrated to head, not shown: "
            f"{', '.join(map(str, behind))} (`alembic -x tenant=N upgrade head`)[/yellow]"
        )
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


def worker(
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Jobs run at once")] = 2,
) -> None:
    """Run a job-queue worker: takes tenants' backfill jobs (and retries stalled ones)."""
    from backfill.jobs import BACKFILL_QUEUE, MAINTENANCE_QUEUE, queue_app

    open_engine().dispose()  # validates settings, configures logging
    queue_app().run_worker(queues=[BACKFILL_QUEUE, MAINTENANCE_QUEUE], concurrency=concurrency)


def enqueue(
    tenant: TenantOption = None,
    batch_size: Annotated[int | None, typer.Option(min=1, max=100_000)] = None,
    max_rate: Annotated[float | None, typer.Option(min=1)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    ranges: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            help="Split each tenant's run into this many key ranges, one job each, so that "
            "as many workers of the pool share one tenant (a resumed run keeps its ranges)",
        ),
    ] = 1,
) -> None:
    """Queue one backfill job per tenant (or per key range) for the workers; print the ids."""
    from backfill.enqueue import enqueue_backfill_ranges, enqueue_backfills

    engine = open_engine()
    tenants = chosen_tenants(engine, tenant)
    engine.dispose()
    if ranges > 1:
        if dry_run:
            console.print("[red]--dry-run: a run split into ranges is a real run[/red]")
            raise typer.Exit(2)
        split = enqueue_backfill_ranges(
            tenants, ranges_each=ranges, batch_size=batch_size, max_rate=max_rate
        )
        for tenant_id, jobs_of_ranges in split.items():
            for range_no, ids in jobs_of_ranges.items():
                said = f"job {ids[1]} (run {ids[0]})" if ids else "already queued"
                typer.echo(f"tenant {tenant_id} range {range_no}: {said}")
        return
    jobs = enqueue_backfills(tenants, batch_size=batch_size, max_rate=max_rate, dry_run=dry_run)
    for tenant_id, job_id in jobs.items():
        typer.echo(f"tenant {tenant_id}: " + (f"job {job_id}" if job_id else "already queued"))


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
    engine = open_engine()
    if tenant is not None:
        chosen_tenants(engine, [tenant])
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
