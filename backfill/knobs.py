"""Knobs an operator turns while a backfill runs: its rate and its batch size, for every
tenant (`all`) or one tenant, in `public.backfill_knobs` (revision 0012). A run reads them
between batches, so a change takes effect at the next batch, in the CLI's run and in the
workers' jobs alike; a tenant's own value wins over the `all` one, field by field."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    delete,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert

KNOBS = Table(
    "backfill_knobs",
    MetaData(schema="public"),
    Column("scope", Text, primary_key=True),
    Column("max_rate", Float),
    Column("batch_size", Integer),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
ALL = "all"
MAX_BATCH_SIZE = 100_000


class InvalidKnob(ValueError):
    """A knob value the runner cannot use; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Knobs:
    """The values in force for a run (None: the run's own option)."""

    max_rate: float | None = None
    batch_size: int | None = None


@dataclass(frozen=True)
class KnobRow:
    """One stored row, as `backfill tune` lists it."""

    scope: str
    max_rate: float | None
    batch_size: int | None


def check(max_rate: float | None, batch_size: int | None) -> None:
    """Raise InvalidKnob unless the values are usable."""
    if max_rate is not None and not (math.isfinite(max_rate) and max_rate > 0):
        raise InvalidKnob("max_rate", "must be a finite number of images per second above 0")
    if batch_size is not None and not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidKnob("batch_size", f"must be between 1 and {MAX_BATCH_SIZE}")


def scope_of(tenant_id: int | None) -> str:
    """The row a tenant's knobs live in (`all` for None)."""
    return ALL if tenant_id is None else str(tenant_id)


def in_force(connection: Connection, tenant_id: int) -> Knobs:
    """The knobs for a tenant's run now: its own row's values, else the `all` row's."""
    rows = {
        row.scope: row
        for row in connection.execute(
            select(KNOBS.c.scope, KNOBS.c.max_rate, KNOBS.c.batch_size).where(
                KNOBS.c.scope.in_([ALL, str(tenant_id)])
            )
        )
    }
    own, every = rows.get(str(tenant_id)), rows.get(ALL)

    def pick(field: str) -> object:
        for row in (own, every):
            if row is not None and getattr(row, field) is not None:
                return getattr(row, field)
        return None

    rate, size = pick("max_rate"), pick("batch_size")
    return Knobs(
        max_rate=float(rate) if isinstance(rate, int | float) else None,
        batch_size=int(size) if isinstance(size, int) else None,
    )


def turn(
    engine: Engine, tenant_id: int | None, *, max_rate: float | None, batch_size: int | None
) -> None:
    """Set the given knobs of a scope (a None leaves that knob as it is)."""
    check(max_rate, batch_size)
    values: dict[str, object] = {"scope": scope_of(tenant_id), "updated_at": func.now()}
    changes: dict[str, object] = {"updated_at": func.now()}
    if max_rate is not None:
        values["max_rate"] = changes["max_rate"] = max_rate
    if batch_size is not None:
        values["batch_size"] = changes["batch_size"] = batch_size
    statement = insert(KNOBS).values(values)
    with engine.begin() as connection:
        connection.execute(statement.on_conflict_do_update(index_elements=["scope"], set_=changes))


def clear(engine: Engine, tenant_id: int | None) -> bool:
    """Remove a scope's knobs; whether there were any."""
    with engine.begin() as connection:
        removed = connection.execute(delete(KNOBS).where(KNOBS.c.scope == scope_of(tenant_id)))
    return bool(removed.rowcount)


def listed(engine: Engine) -> list[KnobRow]:
    """Every stored row, `all` first."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(KNOBS.c.scope, KNOBS.c.max_rate, KNOBS.c.batch_size).order_by(
                KNOBS.c.scope != ALL, func.length(KNOBS.c.scope), KNOBS.c.scope
            )
        )
        return [KnobRow(row.scope, row.max_rate, row.batch_size) for row in rows]
