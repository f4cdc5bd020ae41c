"""`python -m app`: serve, demo, seed, token, create-tenant, migrate, sweep-media.

Over 300 lines because it is the app's one command module (each command a thin typer
function over a service); sweep-media's report is the longest."""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from app.core.cli_support import settings_or_exit
from app.core.settings import get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from app.services.media_gc import MediaLifecycle

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console(stderr=True)


@cli.callback()
def _check_settings() -> None:
    """Fail at start-up, naming the variable, when a setting is missing or malformed."""
    settings_or_exit(console)


@cli.command()
def token(
    user_id: Annotated[
        int | None, typer.Argument(help="Tenant's user id (omit with --admin)")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Add the operator role")] = False,
    hours: Annotated[int, typer.Option(min=1, max=24 * 30)] = 12,
) -> None:
    """Print a signed bearer token for local use."""
    from app.core.database import InvalidTenantId
    from app.core.security import issue_token, now_utc

    settings = get_settings()
    try:
        value = issue_token(
            settings.jwt_secret,
            user_id=user_id,
            is_admin=admin,
            ttl=timedelta(hours=hours),
            now=now_utc(),
        )
    except (ValueError, InvalidTenantId) as exc:
        console.print(f"[red]user_id: {exc}[/red]")
        raise typer.Exit(2) from None
    typer.echo(value)


@cli.command()
def migrate(
    tenant: Annotated[list[int] | None, typer.Option(help="Only these tenants")] = None,
) -> None:
    """Migrate public and every tenant schema to head (same as `alembic upgrade head`)."""
    from app.core import migrate as migrations
    from migrations.tenancy import TenantMigrationFailed

    try:
        migrations.upgrade(None, tenant_ids=tenant or None)
    except TenantMigrationFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None


@cli.command("create-tenant")
def create_tenant_command(
    email: Annotated[str, typer.Argument()],
    display_name: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create a user and migrate its schema; print its id."""
    from app.core.database import make_engine, resolve_database_url
    from app.services.tenant_service import EmailTaken, create_tenant

    engine = make_engine(resolve_database_url(get_settings()), pool_size=2)
    try:
        user = create_tenant(
            engine,
            email=email,
            display_name=display_name,
            contract=get_settings().contract_new_tenants,
        )
    except EmailTaken as exc:
        console.print(f"[red]email: {exc}[/red]")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    typer.echo(user.id)


@cli.command()
def seed(
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same data")] = 42,
    tenants: Annotated[int, typer.Option(min=1, max=100_000)] = 12,
    products: Annotated[int, typer.Option(min=0, max=10_000_000)] = 3282,
    labels: Annotated[int, typer.Option(min=0, help="Legacy products with a label")] = 611,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing if tenants exist")
    ] = False,
) -> None:
    """Create tenants and products shaped like the brief, with real image files."""
    from app.seed.run import SeedRefused, seed_database

    if labels > products:
        console.print("[red]--labels: cannot exceed --products[/red]")
        raise typer.Exit(2)
    try:
        seed_database(
            get_settings(),
            seed=seed,
            tenants=tenants,
            products=products,
            labels=labels,
            if_empty=if_empty,
            console=console,
        )
    except SeedRefused as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@cli.command("sweep-media")
def sweep_media(
    tenant: Annotated[
        list[int] | None, typer.Option("--tenant", help="Tenant id (repeatable)")
    ] = None,
    all_tenants: Annotated[bool, typer.Option("--all", help="Every tenant")] = False,
    grace_minutes: Annotated[
        int,
        typer.Option(
            min=0,
            max=525_600,
            help="Keep objects younger than this: an upload stores its file before its "
            "image commits",
        ),
    ] = 60,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; delete and change nothing")
    ] = False,
) -> None:
    """Remove stored objects (under t<id>/) that no image, backup or rejected element of
    their tenant references, and set each tenant's media usage to what is stored."""
    from app.core.database import make_engine, resolve_database_url
    from app.services.media_gc import MediaLifecycle
    from app.storage.factory import build_storage
    from backfill.tenants import UnknownTenants, select_tenants

    if bool(tenant) == all_tenants:
        console.print(
            "[red]--tenant: give the tenants to sweep (--tenant N, repeatable) or --all[/red]"
        )
        raise typer.Exit(2)
    settings = get_settings()
    engine = make_engine(resolve_database_url(settings), pool_size=2)
    try:
        try:
            tenants = select_tenants(engine, tenant)
        except UnknownTenants as exc:
            console.print(f"[red]--tenant: {exc}[/red]")
            raise typer.Exit(2) from None
        media = MediaLifecycle.of(settings, build_storage(settings))
        grace = timedelta(minutes=grace_minutes)
        failed = _sweep(media, engine, tenants, grace, dry_run, named=bool(tenant))
    finally:
        engine.dispose()
    if failed:
        console.print(f"[red]failed tenants: {', '.join(map(str, failed))}[/red]")
        raise typer.Exit(1)


def _sweep(
    media: MediaLifecycle,
    engine: Engine,
    tenants: list[int],
    grace: timedelta,
    dry_run: bool,
    *,
    named: bool,
) -> list[int]:
    """Sweep each tenant in turn (one's failure does not stop the others); print a line per
    tenant and the totals on stdout; the tenants that failed. A tenant not migrated to head
    fails when `named`, and is skipped (said so) in an all-tenant sweep, as a tenant being
    migrated is not the sweep's to judge."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from sqlalchemy.exc import SQLAlchemyError

    from app.core.security import now_utc
    from app.services.media_sweep import SweepBusy, SweepNotReady, sweep
    from app.storage.base import StorageError

    failed: list[int] = []
    removed = freed = 0
    verb = "would remove" if dry_run else "removed"
    with Progress(
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        disable=not console.is_terminal,
    ) as progress:
        tenants_task = progress.add_task("tenants", total=len(tenants))
        objects_task = progress.add_task("objects", total=None)
        for tenant_id in tenants:
            try:
                report = sweep(
                    media,
                    engine,
                    tenant_id,
                    now=now_utc(),
                    grace=grace,
                    dry_run=dry_run,
                    progress=lambda n: progress.advance(objects_task, n),
                )
            except SweepBusy as exc:
                console.print(f"[yellow]{exc}: skipped[/yellow]")
                continue
            except SweepNotReady as exc:
                if named:
                    console.print(f"[red]tenant {tenant_id}: failed ({exc})[/red]")
                    failed.append(tenant_id)
                else:
                    console.print(f"[yellow]{exc}: skipped[/yellow]")
                continue
            except (StorageError, SQLAlchemyError) as exc:
                reason = (str(exc).strip().splitlines() or [""])[0]
                console.print(
                    f"[red]tenant {tenant_id}: failed ({type(exc).__name__}: {reason})[/red]"
                )
                failed.append(tenant_id)
                continue
            finally:
                progress.advance(tenants_task)
            removal = report.removal
            removed += len(removal.removed)
            freed += removal.freed_bytes
            if removal.failed:
                failed.append(tenant_id)
            typer.echo(
                f"tenant {tenant_id}: {report.listed} objects ({report.listed_bytes:,} bytes), "
                f"{report.young} younger than {grace.total_seconds() / 60:g} min kept, "
                f"{removal.referenced} referenced kept, {len(removal.removed)} {verb} "
                f"({removal.freed_bytes:,} bytes), {len(removal.failed)} failed; "
                f"usage {report.usage_before:,} -> {report.usage_after:,} bytes"
            )
    freed_verb = "would be freed" if dry_run else "freed"
    typer.echo(
        f"{len(tenants)} tenant(s): {removed} object(s) {verb}, {freed:,} bytes {freed_verb}"
    )
    return failed


@cli.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64)] = 1,
) -> None:
    """Serve the API. With several workers, /metrics adds up every worker's metrics
    (Prometheus multiprocess mode, in PROMETHEUS_MULTIPROC_DIR: emptied at start, a temporary
    directory of this run's unless set)."""
    import tempfile
    from contextlib import ExitStack

    import uvicorn

    with ExitStack() as run:
        directory = os.environ.get(METRICS_DIR_VARIABLE)
        if directory:
            _empty_metrics_dir(Path(directory))
        elif workers > 1:
            # Before any worker starts: prometheus_client picks its mode at import.
            temporary = run.enter_context(tempfile.TemporaryDirectory(prefix="pim-metrics-"))
            os.environ[METRICS_DIR_VARIABLE] = temporary
            # Unset before the directory goes: anything this process starts afterwards (a
            # test's subprocess, a second serve) must not inherit a path that is gone.
            run.callback(os.environ.pop, METRICS_DIR_VARIABLE, None)
        uvicorn.run("app.asgi:app", host=host, port=port, workers=workers, log_config=None)


# Named here, not imported from app.core.metrics: importing prometheus_client in this process
# before the variable is set would leave a single-worker server out of multiprocess mode.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def _empty_metrics_dir(directory: Path) -> None:
    """Create the directory, or remove a previous run's metric files from it (counters
    would otherwise carry on from a run that is over)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


@cli.command()
def demo(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
) -> None:
    """Database, migrations, seed data if empty, then the API, with a token to try it."""
    from app.core import migrate as migrations
    from app.core.database import resolve_database_url
    from app.core.security import issue_token, now_utc
    from app.seed.run import seed_database

    # The demo serves its media over http on loopback; marketplaces want https. Let the
    # demo's payloads be built anyway unless the operator said otherwise (never in production:
    # Settings refuses it there).
    if os.environ.get("APP_ENV", "development") != "production":
        os.environ.setdefault("MARKETPLACE_ALLOW_HTTP", "true")
    get_settings.cache_clear()
    settings = get_settings()
    resolve_database_url(settings)  # starts the embedded PostgreSQL when needed
    migrations.upgrade(None)
    summary = seed_database(
        settings, seed=42, tenants=12, products=3282, labels=611, if_empty=True, console=console
    )
    first_tenant = summary.first_tenant_id
    tenant_token = issue_token(
        settings.jwt_secret, user_id=first_tenant, ttl=timedelta(hours=12), now=now_utc()
    )
    admin_token = issue_token(
        settings.jwt_secret, user_id=None, is_admin=True, ttl=timedelta(hours=12), now=now_utc()
    )
    base = f"http://{host}:{port}"
    sample = f"{base}/api/products/{summary.sample_product_id}"
    # Plain stdout, never wrapped: operators copy these lines as they are.
    typer.echo(
        f"\nAPI on {base}  (docs: {base}/docs)\n"
        f"tenant {first_tenant} token:\n  export TOKEN={tenant_token}\n"
        f"admin token:\n  export ADMIN_TOKEN={admin_token}\n"
        f"operator console: {base}/admin (paste the admin token)\n\ntry:\n"
        f'  curl -s -H "Authorization: Bearer $TOKEN" "{base}/api/products?limit=3"\n'
        f'  curl -s -H "Authorization: Bearer $TOKEN" {sample}\n'
        f'  curl -s -H "Authorization: Bearer $TOKEN" {sample}/images\n'
        f'  curl -s -H "Authorization: Bearer $TOKEN" {sample}/marketplaces/vinted\n'
        f'  curl -s -H "Authorization: Bearer $ADMIN_TOKEN" {base}/api/admin/tenants\n'
    )
    sys.stdout.flush()
    import uvicorn

    uvicorn.run("app.asgi:app", host=host, port=port, log_config=None)
