"""job queue: procrastinate 3.10.0's schema in its own `procrastinate` schema

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

The SQL is vendored (migrations/sql/procrastinate_3.10.0.sql, from
`procrastinate.schema.SchemaManager.get_schema()`), so this revision means the same thing
whatever procrastinate version is installed later; a procrastinate upgrade gets its own
revision with that release's migration SQL. Every connection that touches these tables sets
`search_path=procrastinate` (backfill/jobs.py).
"""

from collections.abc import Sequence
from pathlib import Path

from alembic import op

from migrations.scope import public_schema

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA_SQL = Path(__file__).parents[1] / "sql" / "procrastinate_3.10.0.sql"


@public_schema
def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS procrastinate")
    op.execute("SET LOCAL search_path TO procrastinate")
    # Driver-level execution: the file is plain SQL, so no bind-parameter parsing; psycopg
    # still reads % as a placeholder marker, hence the doubling.
    op.get_bind().exec_driver_sql(SCHEMA_SQL.read_text().replace("%", "%%"))
    op.execute("SET LOCAL search_path TO public")


@public_schema
def downgrade() -> None:
    op.execute("DROP SCHEMA procrastinate CASCADE")
