"""What every `backfill` command shares: the console (stderr), the tenant options, the
engine, and the progress bar (rich on a terminal, nothing but JSON events otherwise)."""

from __future__ import annotations

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
from rich.text import Text
from sqlalchemy import Engine

from app.core.cli_support import settings_or_exit
from app.core.database import make_engine, resolve_database_url
from backfill.tenants import (
    UnknownTenants,
    select_tenants,
)

console = Console(stderr=True)
log = structlog.get_logger("backfill")

TenantOption = Annotated[
    list[int] | None, typer.Option("--tenant", help="Tenant id (repeatable); default: all")
]
# For the steps that change a tenant's shape: no default, every tenant is named.
NamedTenantOption = Annotated[
    list[int] | None, typer.Option("--tenant", help="Tenant id (repeatable; required)")
]


def open_engine(pool_size: int = 2) -> Engine:
    """The database's engine (settings refused with exit 2); `pool_size` connections kept,
    as many again on demand."""
    settings = settings_or_exit(console)
    return make_engine(resolve_database_url(settings), pool_size=pool_size)


def chosen_tenants(engine: Engine, requested: list[int] | None) -> list[int]:
    """The tenants asked for (all when none), an unknown one refused with exit 2."""
    try:
        return select_tenants(engine, requested)
    except UnknownTenants as exc:
        console.print(f"[red]--tenant: {exc}[/red]")
        raise typer.Exit(2) from None


class RateColumn(ProgressColumn):
    """Items per second, as rich measures them."""

    def render(self, task: Task) -> Text:
        """`1234/s`, or blank before the first measure."""
        return Text(f"{task.speed:,.0f}/s" if task.speed else "", style="progress.data.speed")


def progress_bar(console: Console, *, disable: bool = False) -> Progress:
    """Every long command's bar: what, bar, done/total, rate, elapsed, remaining."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )


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
        self.bar = progress_bar(console)
        self.bar.__enter__()
        tenants_task = self.bar.add_task("tenants", total=self.tenants)
        products_task = self.bar.add_task("products", total=self.products)
        images_task = self.bar.add_task("images inserted", total=None)
        return self.bar, tenants_task, products_task, images_task

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
