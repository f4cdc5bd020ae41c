"""faster legacy timestamps: the projection functions re-applied

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

`public.pim_legacy_timestamp` reads the UTF-8 bytes of its text instead of matching a
regular expression, and is STRICT (docs/benchmarks.md, "Backfill throughput"): the same
result for every input (tests/backfill/test_projection_functions.py) in about two thirds of
the time (4.3 to 2.8 us a value; the backfill parses one or two per image). Re-applies
backfill/sql/functions.sql, whose every statement is CREATE OR REPLACE: no table is
touched, no lock is held past the functions' own catalog rows. The downgrade leaves the
bodies as they are: the old ones gave the same results.
"""

from collections.abc import Sequence

from alembic import op

from backfill.projection import sql
from migrations.scope import public_schema

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@public_schema
def upgrade() -> None:
    op.get_bind().exec_driver_sql(sql("functions").replace("%", "%%"))


@public_schema
def downgrade() -> None:
    pass  # equivalent bodies: nothing to undo
