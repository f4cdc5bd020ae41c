"""A tenant's backfill run (`backfill_runs`) split into key ranges (`backfill_ranges`,
revision 0016): the split (quantiles of `products.id`, computed once when the run begins and
stored, so a resume reuses it), a range's progress written with its batches, and the roll-up
of the ranges into the run row that `backfill status`, the console and the stage facts read
(its counters are the ranges' sums; it is `done` only when every range is). A run is planned
under a transaction lock, so two workers starting at once agree on one run and its ranges.
Which worker works which range: claims.py; the products a range came back for: deferred.py.

Over 300 lines because the roll-up's SQL and the range progress it sums stay together: a
counter added to one is added to the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text

NO_UPPER_BOUND = 2**63 - 1  # the last range's end: every id a bigint can hold


@dataclass(frozen=True)
class KeyRange:
    """Products with lower < id <= upper (no upper: to the end) of one run, and how far."""

    run_id: int
    range_no: int
    lower: int
    upper: int | None
    checkpoint: int
    status: str = "pending"

    @property
    def last_id(self) -> int:
        """The highest product id the range takes."""
        return NO_UPPER_BOUND if self.upper is None else self.upper

    @property
    def is_done(self) -> bool:
        return self.status == "done"


@dataclass(frozen=True)
class Plan:
    """A run (0: a dry run, kept in memory) and its ranges, in key order."""

    run_id: int
    ranges: tuple[KeyRange, ...]

    @property
    def unfinished(self) -> tuple[KeyRange, ...]:
        return tuple(r for r in self.ranges if not r.is_done)


@dataclass(frozen=True)
class RangeRef:
    """One range of one run: what a job per range is given."""

    run_id: int
    range_no: int


def bounds(split_points: Sequence[int]) -> list[tuple[int, int | None]]:
    """Ranges (lower exclusive, upper inclusive) cut at the given ids: the first from 0, the
    last without an end; repeated or out-of-order points are dropped (fewer products than
    ranges asked gives fewer ranges)."""
    cuts: list[int] = []
    for point in split_points:
        if point > (cuts[-1] if cuts else 0):
            cuts.append(point)
    lowers = [0, *cuts]
    uppers: list[int | None] = [*cuts, None]
    return list(zip(lowers, uppers, strict=True))


def split_points(connection: Connection, schema: str, parts: int) -> list[int]:
    """The ids that cut the tenant's products into `parts` ranges of about equal counts."""
    if parts <= 1:
        return []
    fractions = [k / parts for k in range(1, parts)]
    points = connection.execute(
        text(
            "SELECT percentile_disc(CAST(:fractions AS float8[])) WITHIN GROUP (ORDER BY id) "
            f"FROM {schema}.products"
        ),
        {"fractions": fractions},
    ).scalar_one()
    return [int(p) for p in points or [] if p is not None]


def run_status(statuses: Sequence[str]) -> str:
    """A run's status from its ranges': done only when every range is done; running while
    any is; failed when one failed; pending until any began; else interrupted (resumable)."""
    if not statuses or all(s == "done" for s in statuses):
        return "done"
    for status in ("running", "failed"):
        if status in statuses:
            return status
    if all(s == "pending" for s in statuses):
        return "pending"
    return "interrupted"


def start_or_resume(
    connection: Connection, schema: str, *, parts: int, worker: str, dry_run: bool = False
) -> Plan:
    """The tenant's unfinished run (pending, running, interrupted or failed) with its ranges,
    or a new run split into `parts` ranges (a dry run's split is kept in memory only)."""
    if dry_run:
        with connection.begin():
            cuts = bounds(split_points(connection, schema, parts))
        return Plan(0, tuple(KeyRange(0, n, lo, up, lo) for n, (lo, up) in enumerate(cuts)))
    with connection.begin():
        # Two workers starting at once: the second waits here, then resumes the first's run.
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"backfill-plan:{schema}"},
        )
        # The latest run, unless it is done: a failed one too (its ranges resume from their
        # checkpoints, committed with their rows), never an older one under a done run.
        row = connection.execute(
            text(
                f"SELECT id, checkpoint, status FROM {schema}.backfill_runs "
                "ORDER BY id DESC LIMIT 1"
            )
        ).first()
        if row is not None and row.status != "done":
            if not _ranges(connection, schema, int(row.id)):
                # A run begun before ranges existed: one range, from its own checkpoint.
                _insert_ranges(connection, schema, int(row.id), [(0, None)], int(row.checkpoint))
            return Plan(int(row.id), _ranges(connection, schema, int(row.id)))
        cuts = bounds(split_points(connection, schema, parts))
        run_id = int(
            connection.execute(
                text(
                    f"INSERT INTO {schema}.backfill_runs (status, worker) "
                    "VALUES ('pending', :worker) RETURNING id"
                ),
                {"worker": worker},
            ).scalar_one()
        )
        _insert_ranges(connection, schema, run_id, cuts)
        return Plan(run_id, _ranges(connection, schema, run_id))


def load(connection: Connection, schema: str, run_id: int) -> Plan | None:
    """A run's ranges as they are now (None: no such run, or it has none)."""
    with connection.begin():
        found = _ranges(connection, schema, run_id)
    return Plan(run_id, found) if found else None


def _ranges(connection: Connection, schema: str, run_id: int) -> tuple[KeyRange, ...]:
    rows = connection.execute(
        text(
            "SELECT run_id, range_no, lower_bound, upper_bound, checkpoint, status "
            f"FROM {schema}.backfill_ranges WHERE run_id = :run ORDER BY range_no"
        ),
        {"run": run_id},
    ).all()
    return tuple(
        KeyRange(
            int(r.run_id),
            int(r.range_no),
            int(r.lower_bound),
            None if r.upper_bound is None else int(r.upper_bound),
            int(r.checkpoint),
            str(r.status),
        )
        for r in rows
    )


def _insert_ranges(
    connection: Connection,
    schema: str,
    run_id: int,
    cuts: Sequence[tuple[int, int | None]],
    checkpoint: int | None = None,
) -> None:
    for number, (lower, upper) in enumerate(cuts):
        connection.execute(
            text(
                f"INSERT INTO {schema}.backfill_ranges "
                "(run_id, range_no, lower_bound, upper_bound, checkpoint, status) "
                "VALUES (:run, :no, :lower, :upper, :checkpoint, :status)"
            ),
            {
                "run": run_id,
                "no": number,
                "lower": lower,
                "upper": upper,
                "checkpoint": lower if checkpoint is None else max(lower, checkpoint),
                "status": "pending" if checkpoint is None else "interrupted",
            },
        )


def roll_up(connection: Connection, schema: str, run_id: int) -> str:
    """Write the run row from its ranges (inside the caller's transaction); its status.

    The run row is locked first, so roll-ups queue one behind the other and the last one
    reads every range's committed state (each statement sees what committed before it).
    The run's checkpoint is the end of its finished prefix: the checkpoint of its first
    unfinished range, so "every product up to it is handled" stays true for the run."""
    before = connection.execute(
        text(f"SELECT status FROM {schema}.backfill_runs WHERE id = :run FOR UPDATE"),
        {"run": run_id},
    ).scalar_one()
    statuses = list(
        connection.execute(
            text(
                f"SELECT status FROM {schema}.backfill_ranges WHERE run_id = :run ORDER BY range_no"
            ),
            {"run": run_id},
        ).scalars()
    )
    status = run_status(statuses)
    connection.execute(
        text(
            f"""
            UPDATE {schema}.backfill_runs AS r SET
              status = :status,
              checkpoint = s.checkpoint,
              products_scanned = s.products_scanned,
              images_inserted = s.images_inserted,
              rejected = s.rejected,
              deferred = s.deferred,
              batches = s.batches,
              lock_timeouts = s.lock_timeouts,
              batch_size = s.batch_size,
              error = s.error,
              updated_at = now(),
              -- a planned run's time starts when a worker takes one of its ranges
              started_at = CASE WHEN :before = 'pending' THEN now() ELSE r.started_at END,
              finished_at = CASE WHEN :status IN ('done', 'failed') THEN now() END
            FROM (
              SELECT
                coalesce(
                  (SELECT checkpoint FROM {schema}.backfill_ranges
                   WHERE run_id = :run AND status <> 'done' ORDER BY range_no LIMIT 1),
                  max(checkpoint)) AS checkpoint,
                sum(products_scanned) AS products_scanned,
                sum(images_inserted) AS images_inserted,
                sum(rejected) AS rejected,
                sum(deferred) AS deferred,
                sum(batches) AS batches,
                sum(lock_timeouts) AS lock_timeouts,
                max(batch_size) AS batch_size,
                min(error) AS error
              FROM {schema}.backfill_ranges WHERE run_id = :run
            ) AS s
            WHERE r.id = :run
            """
        ),
        {"run": run_id, "status": status, "before": before},
    )
    return status


def products_left(connection: Connection, schema: str, part: KeyRange) -> int:
    """Products of the range past its checkpoint with no table row yet (a job's total)."""
    return int(
        connection.execute(
            text(
                f"SELECT count(*) FROM {schema}.products AS p "
                "WHERE p.id > :checkpoint AND p.id <= :last AND NOT EXISTS "
                f"(SELECT 1 FROM {schema}.product_images AS i WHERE i.product_id = p.id)"
            ),
            {"checkpoint": part.checkpoint, "last": part.last_id},
        ).scalar_one()
    )


# --- a range's progress, written with its batches ---------------------------------------------


def record_batch(
    connection: Connection,
    schema: str,
    part: KeyRange,
    *,
    ids: Sequence[int],
    checkpoint: int,
    inserted: int,
    rejected: int,
    size: int,
    lock_timeouts: int,
) -> None:
    """A batch's progress, in the batch's own transaction (committed with its rows: after a
    crash, the checkpoint never runs ahead of them). The range's row only (its worker's
    alone): the run row is rolled up outside the batch, so two workers' batches never wait
    for each other on it."""
    connection.execute(
        text(
            f"UPDATE {schema}.backfill_ranges SET checkpoint = :checkpoint, "
            "products_scanned = products_scanned + :scanned, "
            "images_inserted = images_inserted + :inserted, rejected = rejected + :rejected, "
            "batches = batches + 1, batch_size = :size, lock_timeouts = :lock_timeouts, "
            "updated_at = now() WHERE run_id = :run AND range_no = :no"
        ),
        {
            "checkpoint": checkpoint,
            "scanned": len(ids),
            "inserted": inserted,
            "rejected": rejected,
            "size": size,
            "lock_timeouts": lock_timeouts,
            "run": part.run_id,
            "no": part.range_no,
        },
    )


def finish_range(
    connection: Connection,
    schema: str,
    part: KeyRange,
    *,
    status: str,
    error: str | None,
    lock_timeouts: int,
) -> str:
    """The range ends (done, interrupted or failed), rolled up into its run in the caller's
    transaction; the run's status."""
    connection.execute(
        text(
            f"UPDATE {schema}.backfill_ranges SET status = :status, error = :error, "
            "lock_timeouts = :lock_timeouts, updated_at = now(), "
            "finished_at = CASE WHEN :status IN ('done', 'failed') THEN now() END "
            "WHERE run_id = :run AND range_no = :no"
        ),
        {
            "status": status,
            "error": error,
            "lock_timeouts": lock_timeouts,
            "run": part.run_id,
            "no": part.range_no,
        },
    )
    return roll_up(connection, schema, part.run_id)


def status_of_run(connection: Connection, schema: str, run_id: int) -> str:
    """A run's status as its ranges' roll-ups left it."""
    return str(
        connection.execute(
            text(f"SELECT status FROM {schema}.backfill_runs WHERE id = :id"), {"id": run_id}
        ).scalar_one()
    )


def recent(connection: Connection, schema: str, limit: int = 10) -> list[dict[str, object]]:
    """The tenant's latest runs, newest first, as the console lists them."""
    return [
        dict(row)
        for row in connection.execute(
            text(
                "SELECT id, status, worker, products_scanned, images_inserted, rejected, "
                "deferred, batches, started_at, finished_at, error "
                f"FROM {schema}.backfill_runs ORDER BY id DESC LIMIT :n"
            ),
            {"n": limit},
        ).mappings()
    ]
