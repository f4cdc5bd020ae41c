"""Which worker works which range: a session advisory lock per range, taken without waiting.

Lock keys: `backfill:{schema}` in the one-bigint space is the tenant's, held shared by every
worker of the tenant (an older runner took it exclusive: the two never mix); the pair
(hashtext(that key), range number) in the two-int space is the range's, held by the one
worker working it. A dead worker's locks go with its session."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, text

from app.repositories.migration_state.runs import KeyRange, Plan, roll_up


def tenant_lock_key(schema: str) -> str:
    """The tenant's advisory lock key (the quoted schema, as the runner always named it)."""
    return f"backfill:{schema}"


def claim(
    connection: Connection,
    schema: str,
    plan: Plan,
    *,
    worker: str,
    only: int | None = None,
    skip: Collection[int] = (),
) -> tuple[KeyRange | None, bool]:
    """Take the first unfinished range no other worker holds (or range `only`), except those
    in `skip` (taken before by this call), marked running under this connection's session
    lock: (the range or None, whether some unfinished range was held by another worker)."""
    held_elsewhere = False
    for candidate in plan.ranges:
        if only is not None and candidate.range_no != only:
            continue
        if candidate.is_done or candidate.range_no in skip:
            continue
        got = connection.execute(
            text("SELECT pg_try_advisory_lock(hashtext(:key), :no)"),
            {"key": tenant_lock_key(schema), "no": candidate.range_no},
        ).scalar_one()
        connection.commit()
        if not got:
            held_elsewhere = True
            continue
        current = _claimed(connection, schema, candidate, worker)
        if current is not None:
            return current, held_elsewhere
        release(connection, schema, candidate)  # finished meanwhile by the worker before
    return None, held_elsewhere


def _claimed(
    connection: Connection, schema: str, candidate: KeyRange, worker: str
) -> KeyRange | None:
    if candidate.run_id == 0:  # a dry run's range
        return candidate
    with connection.begin():
        row = connection.execute(
            text(
                f"UPDATE {schema}.backfill_ranges SET status = 'running', worker = :worker, "
                "error = NULL, started_at = coalesce(started_at, now()), updated_at = now() "
                "WHERE run_id = :run AND range_no = :no AND status <> 'done' "
                "RETURNING checkpoint"
            ),
            {"run": candidate.run_id, "no": candidate.range_no, "worker": worker},
        ).first()
        if row is None:
            return None
        connection.execute(
            text(f"UPDATE {schema}.backfill_runs SET worker = :worker WHERE id = :run"),
            {"run": candidate.run_id, "worker": worker},
        )
        roll_up(connection, schema, candidate.run_id)
    return KeyRange(
        candidate.run_id,
        candidate.range_no,
        candidate.lower,
        candidate.upper,
        int(row.checkpoint),
        "running",
    )


def release(connection: Connection, schema: str, part: KeyRange) -> None:
    """Let another worker take the range."""
    connection.execute(
        text("SELECT pg_advisory_unlock(hashtext(:key), :no)"),
        {"key": tenant_lock_key(schema), "no": part.range_no},
    )
    connection.commit()


def live_workers(connection: Connection, schema: str) -> int:
    """How many workers hold one of the tenant's ranges now (at least this one): a rate is
    the tenant's, each worker keeps its share. A dead worker's lock went with its session."""
    count = connection.execute(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND objsubid = 2 AND classid = CAST(hashtext(:key) AS oid)"
        ),
        {"key": tenant_lock_key(schema)},
    ).scalar_one()
    connection.commit()
    return max(1, int(count))
