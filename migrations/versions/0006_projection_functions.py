"""projection functions: public.pim_* helpers of the set-based backfill SQL

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

Small IMMUTABLE functions (UUIDv3 image ids, legacy timestamps and orders, blank urls) that
the backfill and the verification use. Defined in backfill/sql/functions.sql so that the SQL
and its tests read one source; `CREATE OR REPLACE`, so a later revision that changes a rule
re-applies the file.
"""

from collections.abc import Sequence

from alembic import op

from backfill.projection import sql
from migrations.scope import public_schema

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = (
    "pim_image_id(bigint, bigint, text)",
    "pim_legacy_timestamp(jsonb)",
    "pim_legacy_order(jsonb)",
    "pim_json_int(jsonb, numeric, numeric)",
    "pim_is_blank(text)",
)


@public_schema
def upgrade() -> None:
    op.get_bind().exec_driver_sql(sql("functions").replace("%", "%%"))


@public_schema
def downgrade() -> None:
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS public.{signature}")
