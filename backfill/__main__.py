"""`python -m backfill ...` (see backfill/cli.py)."""

from backfill.cli import cli

cli()
