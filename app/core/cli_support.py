"""What every operator CLI does first: settings or exit 2, then logging for the terminal."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from app.core.logging import configure_logging
from app.core.settings import Settings, SettingsError, get_settings


def settings_or_exit(console: Console, *, log_level: str | None = None) -> Settings:
    """The settings, or a message naming the bad variable and exit code 2; logs set up as
    console lines on a terminal and JSON lines otherwise."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    configure_logging("console" if sys.stderr.isatty() else "json", log_level or settings.log_level)
    return settings
