"""Job runs: one row per queued job (`public.job_runs`, revision 0014) saying what it is doing
(state, progress, rate, ETA, result or error) and what an operator asked of it (pause,
resume, cancel). The job writes its progress and reads the request between batches
(backfill/controls.py `RunRequests`); the console and the CLI read and set them here.

Over 300 lines because the run row's life (create, start, report, request, finish, and why
a control is refused) is one table's protocol, written here only."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    MetaData,
    RowMapping,
    Table,
    Text,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, distinct_on

JOB_RUNS = Table(
    "job_runs",
    MetaData(schema="public"),
    Column("id", BigInteger, primary_key=True),
    Column("tenant_id", BigInteger, nullable=False),
    Column("kind", Text, nullable=False),
    Column("job_id", BigInteger),
    Column("state", Text, nullable=False),
    Column("requested", Text),
    Column("unit", Text, nullable=False),
    Column("done", BigInteger, nullable=False),
    Column("total", BigInteger),
    Column("result", JSONB),
    Column("error", Text),
    Column("requested_by", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)

Kind = Literal["backfill", "enrich", "verify", "audit", "canonicalize", "contract", "uncontract"]
Control = Literal["pause", "resume", "cancel"]
KINDS: tuple[Kind, ...] = (
    "backfill",
    "enrich",
    "verify",
    "audit",
    "canonicalize",
    "contract",
    "uncontract",
)
UNITS: dict[str, str] = {"enrich": "images"}  # the others count products
ACTIVE = ("queued", "running", "paused")
# Kinds that look at the request between batches: they pause while running and stop at the
# next batch on cancel. The others can be cancelled only while queued (a canonicalize, a
# contract or an uncontract is not stopped half-way by an operator's click).
PAUSABLE = ("backfill", "enrich")
CANCELLABLE_RUNNING = ("backfill", "enrich", "verify", "audit")


class RunCancelled(Exception):
    """Raised inside a job whose run an operator cancelled: it stops at the next batch."""


class NotControllable(ValueError):
    """A pause, resume or cancel the run cannot take (finished, or not that kind)."""


@dataclass(frozen=True)
class JobRun:
    """One row, as the console lists it."""

    id: int
    tenant_id: int
    kind: str
    job_id: int | None
    state: str
    requested: str | None
    unit: str
    done: int
    total: int | None
    result: dict[str, Any] | None
    error: str | None
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE

    @property
    def seconds(self) -> float:
        """Seconds of work so far (or in all, once finished)."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at or self.updated_at
        return max(0.0, (end - self.started_at).total_seconds())

    @property
    def rate(self) -> float | None:
        """Units per second over the run (None before any progress)."""
        return self.done / self.seconds if self.done and self.seconds > 0 else None

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the run's rate, while it runs and its total is known."""
        rate = self.rate
        if self.state != "running" or self.total is None or not rate:
            return None
        return max(0, self.total - self.done) / rate

    @property
    def percent(self) -> float | None:
        if not self.total:
            return 100.0 if self.state == "done" else None
        return min(100.0, 100.0 * self.done / self.total)

    @property
    def can_pause(self) -> bool:
        return self.kind in PAUSABLE and self.state in ("queued", "running") and not self.requested

    @property
    def can_resume(self) -> bool:
        return self.requested == "pause" and self.is_active

    @property
    def can_cancel(self) -> bool:
        if self.requested == "cancel" or not self.is_active:
            return False
        return self.state == "queued" or self.kind in CANCELLABLE_RUNNING


def _run(row: RowMapping) -> JobRun:
    return JobRun(**{column.name: row[column.name] for column in JOB_RUNS.columns})


def _updated(connection: Connection, run_id: int, values: dict[str, Any]) -> JobRun:
    """Write `values` to the run's row; the row as it is now."""
    row = connection.execute(
        update(JOB_RUNS).where(JOB_RUNS.c.id == run_id).values(values).returning(JOB_RUNS)
    )
    return _run(row.mappings().one())


def create(connection: Connection, tenant_id: int, kind: Kind, requested_by: str) -> int:
    """A queued run (its job is deferred next; `attach` records the job's id)."""
    return int(
        connection.execute(
            insert(JOB_RUNS)
            .values(
                tenant_id=tenant_id,
                kind=kind,
                state="queued",
                unit=UNITS.get(kind, "products"),
                done=0,
                requested_by=requested_by,
            )
            .returning(JOB_RUNS.c.id)
        ).scalar_one()
    )


def attach(connection: Connection, run_id: int, job_id: int) -> None:
    connection.execute(update(JOB_RUNS).where(JOB_RUNS.c.id == run_id).values(job_id=job_id))


def forget(connection: Connection, run_id: int) -> None:
    """Remove a run whose job was never deferred (one was already queued)."""
    connection.execute(JOB_RUNS.delete().where(JOB_RUNS.c.id == run_id))


def start(engine: Engine, run_id: int) -> JobRun | None:
    """The job begins (again, after a retry): running, or cancelled when that was asked
    while it waited. None when the run does not exist."""
    with engine.begin() as connection:
        row = (
            connection.execute(select(JOB_RUNS).where(JOB_RUNS.c.id == run_id).with_for_update())
            .mappings()
            .first()
        )
        if row is None:
            return None
        cancelled = row["requested"] == "cancel"
        values: dict[str, Any] = {
            "state": "cancelled" if cancelled else "paused" if row["requested"] else "running",
            "updated_at": func.now(),
            "started_at": func.coalesce(JOB_RUNS.c.started_at, func.now()),
            "error": None,
        }
        if cancelled:
            values["finished_at"] = func.now()
        return _updated(connection, run_id, values)


def report(engine: Engine, run_id: int, *, done: int, total: int | None = None) -> str | None:
    """Record the progress; return the operator's request (pause, cancel or None)."""
    values: dict[str, Any] = {"done": done, "updated_at": func.now()}
    if total is not None:
        values["total"] = total
    with engine.begin() as connection:
        requested = connection.execute(
            update(JOB_RUNS)
            .where(JOB_RUNS.c.id == run_id)
            .values(values)
            .returning(JOB_RUNS.c.requested)
        ).scalar()
    return str(requested) if requested else None


def requested(engine: Engine, run_id: int) -> str | None:
    """The operator's request for the run, if any."""
    with engine.connect() as connection:
        value = connection.execute(
            select(JOB_RUNS.c.requested).where(JOB_RUNS.c.id == run_id)
        ).scalar()
    return str(value) if value else None


def set_state(engine: Engine, run_id: int, state: Literal["running", "paused"]) -> None:
    """A running job pauses or goes on (it saw the request change)."""
    with engine.begin() as connection:
        connection.execute(
            update(JOB_RUNS)
            .where(JOB_RUNS.c.id == run_id, JOB_RUNS.c.state.in_(("running", "paused")))
            .values(state=state, updated_at=func.now())
        )


def finish(
    engine: Engine,
    run_id: int,
    state: Literal["done", "failed", "refused", "cancelled"],
    *,
    result: Mapping[str, Any] | None = None,
    error: str | None = None,
    done: int | None = None,
) -> None:
    """The job ended: its state, its result (JSON-ready) or the reason it did not do it."""
    values: dict[str, Any] = {
        "state": state,
        "error": error,
        "updated_at": func.now(),
        "finished_at": func.now(),
        "requested": None,
    }
    if result is not None:
        values["result"] = json.loads(json.dumps(result, default=str))
    if done is not None:
        values["done"] = done
    with engine.begin() as connection:
        connection.execute(update(JOB_RUNS).where(JOB_RUNS.c.id == run_id).values(values))


def request(engine: Engine, run_id: int, control: Control) -> JobRun:
    """An operator's pause, resume or cancel; NotControllable when the run cannot take it.
    A queued run that is cancelled never starts (its job finds the request and ends)."""
    with engine.begin() as connection:
        row = (
            connection.execute(select(JOB_RUNS).where(JOB_RUNS.c.id == run_id).with_for_update())
            .mappings()
            .first()
        )
        if row is None:
            raise NotControllable(f"run {run_id}: no such run")
        run = _run(row)
        allowed = {"pause": run.can_pause, "resume": run.can_resume, "cancel": run.can_cancel}
        if not allowed[control]:
            raise NotControllable(_why_not(run, control))
        values: dict[str, Any] = {
            "requested": None if control == "resume" else control,
            "updated_at": func.now(),
        }
        if control == "cancel" and run.state == "queued":
            values.update(state="cancelled", finished_at=func.now())
        return _updated(connection, run_id, values)


def _why_not(run: JobRun, control: Control) -> str:
    if not run.is_active:
        return f"run {run.id} has ended ({run.state}): nothing to {control}"
    if control == "pause" and run.kind not in PAUSABLE:
        return f"run {run.id}: a {run.kind} does not pause (only {' and '.join(PAUSABLE)} do)"
    if control == "resume":
        return f"run {run.id} is not paused"
    if control == "cancel" and run.kind not in CANCELLABLE_RUNNING:
        return f"run {run.id}: a {run.kind} that has started runs to its end"
    return f"run {run.id}: already asked to {run.requested}"


def get(engine: Engine, run_id: int) -> JobRun | None:
    with engine.connect() as connection:
        row = connection.execute(select(JOB_RUNS).where(JOB_RUNS.c.id == run_id)).mappings()
        first = row.first()
    return _run(first) if first else None


def recent(
    engine: Engine, tenant_ids: Sequence[int] | None = None, *, limit: int = 20
) -> list[JobRun]:
    """The latest runs, newest first (of these tenants, or of all)."""
    query = select(JOB_RUNS).order_by(JOB_RUNS.c.id.desc()).limit(limit)
    if tenant_ids is not None:
        query = query.where(JOB_RUNS.c.tenant_id.in_(list(tenant_ids)))
    with engine.connect() as connection:
        return [_run(row) for row in connection.execute(query).mappings()]


def latest_results(
    engine: Engine, kind: Kind, tenant_ids: Sequence[int] | None = None
) -> list[JobRun]:
    """Each tenant's latest finished-clean run of a kind (e.g. its last audit)."""
    query = (
        select(JOB_RUNS)
        .where(JOB_RUNS.c.kind == kind, JOB_RUNS.c.state == "done")
        .ext(distinct_on(JOB_RUNS.c.tenant_id))
        .order_by(JOB_RUNS.c.tenant_id, JOB_RUNS.c.id.desc())
    )
    if tenant_ids is not None:
        query = query.where(JOB_RUNS.c.tenant_id.in_(list(tenant_ids)))
    with engine.connect() as connection:
        return [_run(row) for row in connection.execute(query).mappings()]
