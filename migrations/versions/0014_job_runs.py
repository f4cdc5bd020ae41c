"""job runs: what each queued job (backfill, verify, audit, enrich, canonicalize, contract,
uncontract) is doing, and the operator's pause, resume and cancel for it

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05

`public.job_runs`, next to the job queue it describes: one row per job deferred through
`backfill/jobs.py` (the console, the admin API, `backfill enqueue`), with its state, its
progress (done of total, in the unit its kind counts), its result or error, who asked for it,
and `requested`: the control an operator set (pause or cancel), read by the job between
batches (`backfill/job_runs.py`). A new, small table: no lock on a busy one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from migrations.scope import public_schema

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


@public_schema
def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("id", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("tenant_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("job_id", sa.BigInteger),
        sa.Column("state", sa.Text, nullable=False, server_default="queued"),
        sa.Column("requested", sa.Text),
        sa.Column("unit", sa.Text, nullable=False, server_default="products"),
        sa.Column("done", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("total", sa.BigInteger),
        sa.Column("result", JSONB),
        sa.Column("error", sa.Text),
        sa.Column("requested_by", sa.Text, nullable=False, server_default="unknown"),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("id", name="pk_job_runs"),
        sa.CheckConstraint(
            "kind IN ('backfill', 'enrich', 'verify', 'audit', 'canonicalize', 'contract', "
            "'uncontract')",
            name="ck_job_runs_kind_known",
        ),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'paused', 'done', 'failed', 'refused', 'cancelled')",
            name="ck_job_runs_state_known",
        ),
        sa.CheckConstraint(
            "requested IS NULL OR requested IN ('pause', 'cancel')",
            name="ck_job_runs_requested_known",
        ),
    )
    op.create_index("ix_job_runs_tenant", "job_runs", ["tenant_id", sa.text("id DESC")])
    op.create_index("ix_job_runs_job", "job_runs", ["job_id"])


@public_schema
def downgrade() -> None:
    op.drop_table("job_runs")
