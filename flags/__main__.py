"""`python -m flags ...` (see flags/cli.py)."""

from flags.cli import cli

cli()
