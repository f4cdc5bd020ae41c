"""backfill ranges: a tenant's run split into key ranges, each with its own checkpoint

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05

Per tenant (issue 21, item 2: parallel workers within one tenant). `backfill_ranges`: the
ranges of product ids a run was split into when it began (quantiles of `products.id`,
computed once, so a resume reuses them), each with its own checkpoint, status, counters and
worker (app/repositories/migration_state/runs.py). A run row in `backfill_runs` stays the
tenant's summary: its counters are the sums of its ranges', and it is `done` only when every
range is.
`backfill_runs` may also be `pending`: planned and queued (one job per range) but not begun.

Locks: a new table; the status check of `backfill_runs` (a small table) is replaced by one
added NOT VALID and then validated, so nothing is rewritten and the ACCESS EXCLUSIVE lock
lasts an instant, bounded by the migration's lock_timeout (env.py sets it per tenant and
retries with backoff; set here too when the caller left it unbounded).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations.scope import tenant_schema

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_STATUSES = "status IN ('pending', 'running', 'interrupted', 'done', 'failed')"
_OLD_STATUSES = "status IN ('running', 'interrupted', 'done', 'failed')"


def _bounded_lock_wait() -> None:
    # Never queue behind traffic without a bound, whoever runs this revision.
    op.execute(
        "SELECT set_config('lock_timeout', '500ms', true) "
        "WHERE current_setting('lock_timeout') = '0'"
    )


# Its name in the database (revision 0004 created it through the models' naming convention).
_STATUS_CHECK = "ck_backfill_runs_ck_backfill_runs_status_known"


def _replace_status_check(check: str) -> None:
    op.execute(f"ALTER TABLE backfill_runs DROP CONSTRAINT {_STATUS_CHECK}")
    op.execute(
        f"ALTER TABLE backfill_runs ADD CONSTRAINT {_STATUS_CHECK} CHECK ({check}) NOT VALID"
    )
    op.execute(f"ALTER TABLE backfill_runs VALIDATE CONSTRAINT {_STATUS_CHECK}")


@tenant_schema
def upgrade() -> None:
    _bounded_lock_wait()
    op.create_table(
        "backfill_ranges",
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("range_no", sa.Integer, nullable=False),
        # Products with lower_bound < id <= upper_bound; no upper bound for the last range,
        # which also takes the products created after the split.
        sa.Column("lower_bound", sa.BigInteger, nullable=False),
        sa.Column("upper_bound", sa.BigInteger),
        # Every product of the range with id <= checkpoint has been handled (or deferred).
        sa.Column("checkpoint", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("worker", sa.Text),
        sa.Column("products_scanned", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("images_inserted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rejected", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("deferred", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("batches", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lock_timeouts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("batch_size", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("run_id", "range_no", name="pk_backfill_ranges"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["backfill_runs.id"], name="fk_backfill_ranges_run", ondelete="CASCADE"
        ),
        sa.CheckConstraint(_STATUSES, name="status_known"),
        # Named through the naming convention: ck_backfill_ranges_<name>.
        sa.CheckConstraint("upper_bound IS NULL OR upper_bound > lower_bound", name="not_empty"),
        sa.CheckConstraint("checkpoint >= lower_bound", name="checkpoint_in_range"),
    )
    _replace_status_check(_STATUSES)


@tenant_schema
def downgrade() -> None:
    _bounded_lock_wait()
    # A planned run the old runner would not resume: it resumes an interrupted one from its
    # checkpoint, which the ranges' roll-up kept at the end of their done prefix.
    op.execute("UPDATE backfill_runs SET status = 'interrupted' WHERE status = 'pending'")
    op.drop_table("backfill_ranges")
    _replace_status_check(_OLD_STATUSES)
