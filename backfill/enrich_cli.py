"""`python -m backfill enrich`: fill image metadata from the stored objects (backfill/enrich/).

Registered on the backfill CLI with `cli.command("enrich")(enrich)`; runs on its own too:
`python -m backfill.enrich_cli --help`.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console

from app.core.cli_support import settings_or_exit
from app.core.database import make_engine, resolve_database_url
from backfill.controls import PauseToggle, RunControls
from backfill.enrich import EnrichOptions, TenantEnrichment, enrich_tenants, pending_count
from backfill.tenants import UnknownTenants, select_tenants

console = Console(stderr=True)
DEFAULTS = EnrichOptions()


def enrich(
    tenant: Annotated[
        list[int] | None, typer.Option("--tenant", help="Tenant id (repeatable); default: all")
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=256, help="Objects read at once (HTTP connections)")
    ] = DEFAULTS.concurrency,
    max_rate: Annotated[
        float | None, typer.Option(min=0.1, help="HTTP requests per second, at most")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and report, write nothing")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Try again images with a recorded failure")
    ] = False,
    batch_products: Annotated[
        int,
        typer.Option(
            min=1, max=1000, help="Products per batch: read together, written in one transaction"
        ),
    ] = DEFAULTS.batch_products,
) -> None:
    """Fill images' type, size, pixels and alt text from the stored objects; resumable."""
    from app.composition import build
    from backfill.commands.common import progress_bar

    settings = settings_or_exit(console)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    engine = make_engine(resolve_database_url(settings), pool_size=2)
    try:
        tenants = select_tenants(engine, tenant)
    except UnknownTenants as exc:
        console.print(f"[red]--tenant: {exc}[/red]")
        raise typer.Exit(2) from None
    services = build(settings, engine)
    flags = services.flags
    if not flags.wait_until_ready(10.0):
        console.print(f"[yellow]flags: {flags.source} did not answer; using the defaults[/yellow]")
    options = EnrichOptions(
        concurrency=concurrency,
        max_rate=max_rate,
        dry_run=dry_run,
        retry_failed=retry_failed,
        batch_products=batch_products,
    )
    controls = RunControls(is_paused=PauseToggle(flags).is_paused)
    with (
        controls.stop_on_signals(),
        progress_bar(console, disable=not console.is_terminal) as bar,
    ):
        total = None
        if console.is_terminal:
            total = sum(pending_count(engine, t, retry_failed=retry_failed) for t in tenants)
        task = bar.add_task("images", total=total)
        results = enrich_tenants(
            engine,
            services.images,
            tenants,
            options,
            controls=controls,
            progress=lambda _tenant, images: bar.advance(task, images),
        )
    services.close()
    engine.dispose()
    _summary(results, dry_run=dry_run)
    if controls.should_stop():
        console.print("[yellow]stopped: rerun `backfill enrich` to go on where it left[/yellow]")
        raise typer.Exit(130)
    if any(result.status != "done" for result in results):
        raise typer.Exit(1)


def _summary(results: list[TenantEnrichment], *, dry_run: bool) -> None:
    verb = "would fill" if dry_run else "filled"
    for result in results:
        reasons = ", ".join(f"{name} {count}" for name, count in result.reasons.most_common())
        console.print(
            f"tenant {result.tenant_id}: {result.status}; {result.images} images, {verb} "
            f"{result.enriched}, failed {result.failed}"
            + (f" ({reasons})" if reasons else "")
            + f", skipped {result.skipped}; {result.requests} requests, "
            f"{result.bytes_read / max(result.fetched, 1) / 1024:.1f} KiB read per object, "
            f"{result.seconds:.1f} s",
            soft_wrap=True,
        )
    failed = sum(result.failed for result in results)
    if failed and not dry_run:
        console.print(
            f"{failed} image(s) recorded in image_metadata_failures; "
            "`--retry-failed` tries them again",
            soft_wrap=True,
        )


if __name__ == "__main__":
    typer.run(enrich)
