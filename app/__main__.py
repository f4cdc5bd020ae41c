"""`python -m app ...`: the operator's entry point (see app/cli.py)."""

from app.cli import cli

cli()
