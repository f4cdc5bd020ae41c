"""`python -m flags`: toggles and each tenant's effective stage; enable/disable toggles
through the Unleash Admin API (UNLEASH_URL + UNLEASH_ADMIN_TOKEN) or the local toggle file;
the shadow reads' mismatch sample, replayable."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from app.composition import build
from app.core.cli_support import settings_or_exit
from app.core.database import TenantSession, make_engine, resolve_database_url, unit_of_work
from app.core.settings import Settings
from app.repositories import shadow_reads
from app.repositories.migration_state import unverified_tenants
from app.repositories.tenant_facts import tenant_facts
from app.services.product_image_service import ProductImageService
from app.services.product_service import ProductNotFound
from backfill.tenants import UnknownTenants, is_ready, select_tenants
from flags import toggle_file
from flags.admin_api import UnleashAdminError
from flags.client import FlagClient, Toggle
from flags.stages import resolve
from flags.store import (
    GLOBAL,
    PER_TENANT,
    InterlockedStore,
    NotVerified,
    StoreUnavailable,
    toggle_store,
    unleash_admin,
)

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console(stderr=True)

TenantOption = Annotated[list[int] | None, typer.Option("--tenant", help="Tenant id (repeatable)")]


def _store(settings: Settings, engine: Engine) -> InterlockedStore:
    try:
        return toggle_store(settings, unverified=partial(unverified_tenants, engine))
    except StoreUnavailable as exc:
        raise _fail(str(exc)) from None


def _fail(message: str, code: int = 2) -> typer.Exit:
    """Print the reason; the caller raises the returned exit (2: bad input, 1: failure)."""
    console.print(f"[red]{message}[/red]")
    return typer.Exit(code)


def _engine(settings: Settings) -> Engine:
    return make_engine(resolve_database_url(settings), pool_size=2)


def _tenants(engine: Engine, requested: list[int] | None) -> list[int]:
    try:
        return select_tenants(engine, requested)
    except UnknownTenants as exc:
        engine.dispose()
        raise _fail(f"--tenant: {exc}") from None


@cli.command()
def status(tenant: TenantOption = None) -> None:
    """Each toggle and the effective stage and read path per tenant, with refusals and the
    shadow mismatches sampled."""
    settings = settings_or_exit(console, log_level="WARNING")
    engine = _engine(settings)
    tenants = _tenants(engine, tenant)
    client = FlagClient.from_settings(settings)
    if not client.wait_until_ready(10.0):
        console.print(
            f"[yellow]flags: {client.source} did not answer; showing the safe defaults[/yellow]"
        )
    table = Table(title=f"flags ({client.source})")
    for column in (
        "tenant",
        "dual-write",
        "read-table",
        "shadow",
        "stage",
        "reads",
        "mismatches",
        "refusal",
    ):
        table.add_column(column)
    for tenant_id in tenants:
        if not is_ready(engine, tenant_id):
            table.add_row(str(tenant_id), "", "", "", "legacy", "jsonb", "", "not migrated to head")
            continue
        flags = client.flags_for(tenant_id)
        with unit_of_work(engine, tenant_id) as session:
            resolution = resolve(tenant_facts(session), flags)
            sample = shadow_reads.sampled(session, limit=shadow_reads.SAMPLE_SIZE)
        latest = f" (last {sample[0].found_at:%Y-%m-%d %H:%M})" if sample else ""
        table.add_row(
            str(tenant_id),
            _mark(flags.dual_write),
            _mark(flags.read_table),
            _mark(flags.shadow_compare),
            resolution.stage.value,
            resolution.read_path.value,
            f"{len(sample)}{latest}" if sample else "0",
            resolution.refusal or "",
        )
    pause = client.is_enabled(Toggle.BACKFILL_PAUSE)
    client.close()
    engine.dispose()
    out = Console(width=None if sys.stdout.isatty() else 200)
    out.print(table)
    out.print(f"backfill-pause: {_mark(pause)}")


def _mark(value: bool) -> str:
    return "on" if value else "off"


def _change(toggle: str, tenants: list[int] | None, *, enable: bool, force: bool) -> None:
    settings = settings_or_exit(console, log_level="WARNING")
    if toggle in GLOBAL and tenants:
        raise _fail(f"--tenant: {toggle} is global, it takes no tenant")
    if toggle in PER_TENANT and not tenants:
        raise _fail(f"--tenant: {toggle} is per tenant: give at least one")
    engine = _engine(settings)
    try:
        if tenants:
            _tenants(engine, tenants)
        store = _store(settings, engine)
        try:
            if toggle in GLOBAL:
                store.set_enabled(GLOBAL[toggle], enable)
                console.print(f"{toggle}: {_mark(enable)} ({store.location})")
                return
            targeted = store.set_tenants(
                PER_TENANT[toggle],
                add=list(tenants or []) if enable else [],
                remove=[] if enable else list(tenants or []),
                force=force,
            )
            console.print(f"{toggle}: tenants {targeted} ({store.location})")
        except NotVerified as exc:
            raise _fail(
                f"--tenant: {exc}; run `python -m backfill verify` first (or --force)"
            ) from None
        except (UnleashAdminError, toggle_file.ToggleFileError) as exc:
            raise _fail(f"{toggle}: {exc}", code=1) from None
        finally:
            store.close()
    finally:
        engine.dispose()


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


@cli.command()
def push(
    source: Annotated[
        Path | None,
        typer.Option(
            "--file",
            exists=True,
            dir_okay=False,
            help="Toggle definitions (default: the tracked flags/toggles.json, never the "
            "local FLAGS_FILE, whose flips target this machine's tenants)",
        ),
    ] = None,
) -> None:
    """Create in Unleash the migration's toggles it does not have yet, as the tracked
    defaults define them (existing toggles are left as they are)."""
    settings = settings_or_exit(console, log_level="WARNING")
    if not settings.unleash_url:
        raise _fail("UNLEASH_URL: push creates the toggles on an Unleash server; it is not set")
    try:
        store = unleash_admin(settings)
    except StoreUnavailable as exc:
        raise _fail(str(exc)) from None
    try:
        for feature in toggle_file.load(source or toggle_file.DEFAULTS).get("features", []):
            name = str(feature.get("name"))
            if name not in {t.value for t in Toggle}:
                continue
            if store.exists(name):
                console.print(f"{name}: already in Unleash, left as it is")
                continue
            store.create(feature)
            console.print(f"{name}: created ({_mark(store.is_enabled(name))})")
    except UnleashAdminError as exc:
        raise _fail(str(exc), code=1) from None
    finally:
        store.close()


@cli.command()
def mismatches(
    tenant: Annotated[int, typer.Option("--tenant", help="Tenant id")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=shadow_reads.SAMPLE_SIZE)] = 20,
    replay: Annotated[
        bool, typer.Option("--replay", help="Compare the sampled products again, now")
    ] = False,
) -> None:
    """The latest shadow mismatches of a tenant; --replay says which still differ."""
    settings = settings_or_exit(console, log_level="WARNING")
    engine = _engine(settings)
    _tenants(engine, [tenant])
    if not is_ready(engine, tenant):
        engine.dispose()
        raise _fail(f"--tenant: tenant {tenant} is not migrated to head")
    services = build(settings, engine)
    service = services.images  # compare reads both representations, whatever the flags
    table = Table(title=f"shadow mismatches, tenant {tenant}")
    for column in ("found at", "product", "kind", "read path", "detail", *(["now"] * replay)):
        table.add_column(column)
    still = 0
    with unit_of_work(engine, tenant) as session:
        sample = shadow_reads.sampled(session, limit=limit)
        replayed: dict[int, str] = {}
        for mismatch in sample:
            if replay and mismatch.product_id not in replayed:
                replayed[mismatch.product_id] = _replay(service, session, mismatch.product_id)
            now = [replayed[mismatch.product_id]] if replay else []
            table.add_row(
                f"{mismatch.found_at:%Y-%m-%d %H:%M:%S}",
                str(mismatch.product_id),
                mismatch.kind,
                mismatch.read_path,
                mismatch.detail,
                *now,
            )
        still = sum(1 for verdict in replayed.values() if verdict.startswith("differs"))
    services.close()
    engine.dispose()
    out = Console(width=None if sys.stdout.isatty() else 200)
    out.print(table)
    if not sample:
        out.print("no mismatch sampled")
    if replay:
        out.print(f"{still} of {len(replayed)} product(s) still differ")
        if still:
            raise typer.Exit(1)


def _replay(service: ProductImageService, session: TenantSession, product_id: int) -> str:
    try:
        differences = service.compare(session, product_id=product_id)
    except ProductNotFound:
        return "product deleted"
    if not differences:
        return "equal"
    return "differs: " + ", ".join(sorted({d.kind for d in differences}))


def _check_name(toggle: str) -> None:
    if toggle not in PER_TENANT and toggle not in GLOBAL:
        raise _fail(f"toggle: unknown {toggle!r}; one of {', '.join([*PER_TENANT, *GLOBAL])}")
