"""`python -m backfill`: run, verify, status. Progress bars on a terminal, JSON events otherwise.

The commands live in backfill/commands/, one module per part of the road; this module
names them."""

from __future__ import annotations

import typer

from backfill.commands import contract, reports, run, verify
from backfill.enrich_cli import enrich

__all__ = ["cli"]

cli = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.split("\n\n")[0])
report = typer.Typer(no_args_is_help=True, help="Reports for operators.")
cli.add_typer(report, name="report")

cli.command()(run.run)
cli.command()(verify.verify)
cli.command()(verify.repair)
cli.command()(run.status)
cli.command()(run.worker)
cli.command()(run.enqueue)
cli.command("enrich")(enrich)
cli.command()(run.tune)
cli.command("apply-overrides")(reports.apply_overrides_command)
cli.command("audit-publications")(reports.audit_publications)
cli.command()(contract.backup)
cli.command()(contract.backups)
cli.command()(contract.restore)
cli.command()(contract.canonicalize)
cli.command()(contract.contract)
cli.command()(contract.uncontract)
report.command("labels")(reports.report_labels)
report.command("rejected")(reports.report_rejected)
report.command("metadata")(reports.report_metadata)
