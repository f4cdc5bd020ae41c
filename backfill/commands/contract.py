"""`backfill backup`, `backups`, `restore`, `canonicalize`, `contract` and `uncontract`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from backfill.commands.common import (
    NamedTenantOption,
    TenantOption,
    chosen_tenants,
    console,
    open_engine,
)
from backfill.tenants import is_contracted, is_ready


def backup(
    tenant: TenantOption = None,
    drop: Annotated[
        int | None, typer.Option("--drop", help="Delete this backup id (with one --tenant)")
    ] = None,
) -> None:
    """Copy each tenant's `products.id, images` into its image_backups (or list / drop one)."""
    from backfill import contract as contract_steps

    engine = open_engine()
    tenants = chosen_tenants(engine, tenant)
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


def backups(tenant: TenantOption = None) -> None:
    """The backups each tenant holds."""
    from backfill import contract as contract_steps

    engine = open_engine()
    table = Table(title="image backups")
    for column in ("tenant", "id", "taken at", "reason", "products", "elements"):
        table.add_column(column)
    for tenant_id in chosen_tenants(engine, tenant):
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


def restore(
    tenant: Annotated[int, typer.Option("--tenant", help="Tenant id")],
    backup_id: Annotated[int, typer.Option("--backup", help="Backup id (see `backups`)")],
) -> None:
    """Put a backup's JSONB back (the tenant must not be contracted); clears verified."""
    from backfill import contract as contract_steps

    engine = open_engine()
    chosen_tenants(engine, [tenant])
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


def canonicalize(tenant: TenantOption = None) -> None:
    """Rewrite each verified tenant's JSONB into exactly what the table rebuilds (a backup of
    the original bytes first), so the contract can prove its downgrade gives it back."""
    from backfill import contract as contract_steps

    engine = open_engine()
    refused = False
    for tenant_id in chosen_tenants(engine, tenant):
        if not is_ready(engine, tenant_id):
            continue
        if is_contracted(engine, tenant_id):  # done already, as `contract --all` sees it
            console.print(f"tenant {tenant_id}: contracted (no JSONB left to rewrite)")
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
    engine = open_engine()
    tenants = chosen_tenants(engine, tenant)
    try:
        migrate.contract(engine, tenant_ids=tenants)
    except TenantMigrationFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    console.print(f"contracted: {', '.join(map(str, tenants))}")


def uncontract(tenant: NamedTenantOption = None) -> None:
    """Re-add products.images for these tenants, rebuilt from the table with every key.
    Same as `alembic -n contract -x tenant=N downgrade base`."""
    from app.core import migrate
    from migrations.tenancy import TenantMigrationFailed

    if not tenant:
        console.print("[red]--tenant: give the tenants to uncontract[/red]")
        raise typer.Exit(2)
    engine = open_engine()
    tenants = chosen_tenants(engine, tenant)
    try:
        migrate.uncontract(engine, tenant_ids=tenants)
    except TenantMigrationFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    console.print(f"uncontracted: {', '.join(map(str, tenants))}")
