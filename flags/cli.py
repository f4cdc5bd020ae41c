"""`python -m flags`: status per tenant; enable/disable toggles (local toggle file)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.core.cli_support import settings_or_exit
from app.core.database import make_engine, resolve_database_url, unit_of_work
from app.core.settings import Settings
from app.services.image_paths import tenant_facts
from backfill.tenants import UnknownTenants, is_ready, select_tenants
from flags import toggle_file
from flags.client import FlagClient, Toggle
from flags.stages import resolve

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console(stderr=True)

PER_TENANT = {"read-table": Toggle.READ_TABLE, "shadow-compare": Toggle.SHADOW_COMPARE}
GLOBAL = {"dual-write": Toggle.DUAL_WRITE, "backfill-pause": Toggle.BACKFILL_PAUSE}
TenantOption = Annotated[list[int] | None, typer.Option("--tenant", help="Tenant id (repeatable)")]


@cli.command()
def status(tenant: TenantOption = None) -> None:
    """Each toggle and the effective stage and read path per tenant (with refusals)."""
    settings = settings_or_exit(console, log_level="WARNING")
    engine = make_engine(resolve_database_url(settings), pool_size=2)
    client = FlagClient(
        url=settings.unleash_url,
        api_token=settings.unleash_api_token,
        toggles_file=settings.flags_file,
    )
    try:
        tenants = select_tenants(engine, tenant)
    except UnknownTenants as exc:
        console.print(f"[red]--tenant: {exc}[/red]")
        raise typer.Exit(2) from None
    table = Table(title=f"flags ({client.source})")
    for column in ("tenant", "dual-write", "read-table", "shadow", "stage", "reads", "refusal"):
        table.add_column(column)
    for tenant_id in tenants:
        if not is_ready(engine, tenant_id):
            table.add_row(str(tenant_id), "", "", "", "legacy", "jsonb", "not migrated to head")
            continue
        flags = client.flags_for(tenant_id)
        with unit_of_work(engine, tenant_id) as session:
            resolution = resolve(tenant_facts(session), flags)
        table.add_row(
            str(tenant_id),
            _mark(flags.dual_write),
            _mark(flags.read_table),
            _mark(flags.shadow_compare),
            resolution.stage.value,
            resolution.read_path.value,
            resolution.refusal or "",
        )
    client.close()
    engine.dispose()
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def _mark(value: bool) -> str:
    return "on" if value else "off"


def _change(toggle: str, tenants: list[int] | None, *, enable: bool, force: bool) -> None:
    settings = settings_or_exit(console, log_level="WARNING")
    if settings.unleash_url:
        console.print(
            "[red]UNLEASH_URL is set: change toggles in the Unleash UI or Admin API "
            "(this command edits the local toggle file only, for now)[/red]"
        )
        raise typer.Exit(2)
    path = settings.flags_file
    definitions = toggle_file.load(path)
    if toggle in GLOBAL:
        if tenants:
            console.print(f"[red]--tenant: {toggle} is global, it takes no tenant[/red]")
            raise typer.Exit(2)
        toggle_file.save(path, toggle_file.with_enabled(definitions, GLOBAL[toggle], enable))
        console.print(f"{toggle}: {'on' if enable else 'off'} ({path})")
        return
    if not tenants:
        console.print(f"[red]--tenant: {toggle} is per tenant: give at least one[/red]")
        raise typer.Exit(2)
    if enable and toggle == "read-table" and not force:
        _refuse_unverified(settings, tenants)
    name = PER_TENANT[toggle]
    changed = (
        toggle_file.with_tenants(definitions, name, add=tenants)
        if enable
        else toggle_file.with_tenants(definitions, name, remove=tenants)
    )
    toggle_file.save(path, changed)
    console.print(f"{toggle}: tenants {toggle_file.tenants(changed, name)} ({path})")


def _refuse_unverified(settings: Settings, tenants: list[int]) -> None:
    engine = make_engine(resolve_database_url(settings), pool_size=2)
    try:
        select_tenants(engine, tenants)
        unverified = []
        for tenant_id in tenants:
            if not is_ready(engine, tenant_id):
                unverified.append(tenant_id)
                continue
            with unit_of_work(engine, tenant_id) as session:
                if not tenant_facts(session).is_verified:
                    unverified.append(tenant_id)
    except UnknownTenants as exc:
        console.print(f"[red]--tenant: {exc}[/red]")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    if unverified:
        console.print(
            f"[red]--tenant: not verified: {', '.join(map(str, unverified))}; run "
            "`python -m backfill verify` first (or --force)[/red]"
        )
        raise typer.Exit(2)


ToggleArgument = Annotated[
    str, typer.Argument(help="dual-write, read-table, shadow-compare, backfill-pause")
]


@cli.command()
def enable(
    toggle: ToggleArgument,
    tenant: TenantOption = None,
    force: Annotated[bool, typer.Option("--force", help="Skip the verified check")] = False,
) -> None:
    """Turn a toggle on (for the given tenants, when it is per tenant)."""
    _check_name(toggle)
    _change(toggle, tenant, enable=True, force=force)


@cli.command()
def disable(toggle: ToggleArgument, tenant: TenantOption = None) -> None:
    """Turn a toggle off (for the given tenants, when it is per tenant)."""
    _check_name(toggle)
    _change(toggle, tenant, enable=False, force=True)


def _check_name(toggle: str) -> None:
    if toggle not in PER_TENANT and toggle not in GLOBAL:
        console.print(
            f"[red]toggle: unknown {toggle!r}; one of {', '.join([*PER_TENANT, *GLOBAL])}[/red]"
        )
        raise typer.Exit(2)
