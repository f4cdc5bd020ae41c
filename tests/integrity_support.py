"""What tests/test_integrity_stateful.py needs around its state machine: a read of everything
a tenant holds about its images (one snapshot, straight from SQL), per-tenant flags flipped
through the real Unleash client, and a write that lands inside a verify's window."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text

from app.core.database import quoted_schema, tenant_schema
from app.images import Image, row_to_image
from flags.client import TOGGLES_FILE, FlagClient, Toggle
from flags.stages import Flags


@dataclass(frozen=True)
class ProductState:
    """One product as the database holds it: its JSONB (None once contracted) and its rows."""

    product_id: int
    source: str | None
    created_at: datetime
    raw: Any
    rows: tuple[Image, ...]


@dataclass(frozen=True)
class Rejection:
    """One row of `rejected_image_elements`."""

    position: int
    raw: Any
    reason: str


@dataclass(frozen=True)
class TenantState:
    """Everything a tenant holds about its images, read in one REPEATABLE READ snapshot."""

    has_column: bool
    verified_at: datetime | None
    drift_found_at: datetime | None
    canonical_at: datetime | None
    contracted_at: datetime | None
    products: dict[int, ProductState]
    rejections: dict[int, list[Rejection]] = field(default_factory=dict)
    backed_up: dict[int, list[Any]] = field(default_factory=dict)  # every backup's copy
    backups: int = 0
    # Products the safety net logged as written outside the dual-write (rows may be stale).
    logged: frozenset[int] = frozenset()

    def comparable(self) -> tuple[object, ...]:
        """What a refused step must leave exactly as it was."""
        return (
            self.has_column,
            self.verified_at,
            self.drift_found_at,
            self.canonical_at,
            self.contracted_at,
            {pid: (p.raw, p.rows) for pid, p in self.products.items()},
            {pid: sorted(map(repr, r)) for pid, r in self.rejections.items()},
            self.backups,
        )


def read_tenant(engine: Engine, tenant_id: int) -> TenantState:
    """The tenant's products, rows, rejections, backups and migration state, one snapshot."""
    schema = quoted_schema(tenant_schema(tenant_id))
    with engine.connect() as connection:
        connection.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        has_column = bool(
            connection.execute(
                text(
                    "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "
                    "to_regclass(:products) AND attname = 'images' AND NOT attisdropped)"
                ),
                {"products": f"{schema}.products"},
            ).scalar_one()
        )
        images = "images" if has_column else "NULL AS images"
        products = connection.execute(
            text(f"SELECT id, source, created_at, {images} FROM {schema}.products ORDER BY id")
        ).all()
        rows: dict[int, list[Image]] = {}
        for row in connection.execute(
            text(f'SELECT * FROM {schema}.product_images ORDER BY product_id, "order"')
        ).mappings():
            rows.setdefault(int(row["product_id"]), []).append(row_to_image(dict(row)))
        rejections: dict[int, list[Rejection]] = {}
        for r in connection.execute(
            text(f"SELECT product_id, position, raw, reason FROM {schema}.rejected_image_elements")
        ):
            rejections.setdefault(int(r.product_id), []).append(
                Rejection(int(r.position), r.raw, r.reason)
            )
        backed_up: dict[int, list[Any]] = {}
        for b in connection.execute(
            text(f"SELECT product_id, images FROM {schema}.image_backup_rows ORDER BY backup_id")
        ):
            backed_up.setdefault(int(b.product_id), []).append(b.images)
        backups = int(
            connection.execute(text(f"SELECT count(*) FROM {schema}.image_backups")).scalar_one()
        )
        logged = frozenset(
            connection.execute(text(f"SELECT product_id FROM {schema}.changed_products")).scalars()
        )
        state = connection.execute(
            text(
                "SELECT verified_at, drift_found_at, canonical_at, contracted_at "
                f"FROM {schema}.image_migration_state WHERE id = 1"
            )
        ).one()
        connection.rollback()
    return TenantState(
        has_column=has_column,
        verified_at=state.verified_at,
        drift_found_at=state.drift_found_at,
        canonical_at=state.canonical_at,
        contracted_at=state.contracted_at,
        products={
            int(p.id): ProductState(
                int(p.id), p.source, p.created_at, p.images, tuple(rows.get(int(p.id), ()))
            )
            for p in products
        },
        rejections=rejections,
        backed_up=backed_up,
        backups=backups,
        logged=logged,
    )


def drop_tenant(engine: Engine, tenant_id: int) -> None:
    """Remove a tenant made for one example (its schema and its user), so that hundreds of
    examples do not leave hundreds of tenants for the session's later tests to walk."""
    with engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {quoted_schema(tenant_schema(tenant_id))} CASCADE"))
        connection.execute(text("DELETE FROM public.users WHERE id = :id"), {"id": tenant_id})


class TenantToggles:
    """The three image toggles of one tenant, written to an Unleash toggle file and read
    back by a real FlagClient (the same evaluation as production). `set` reloads at once;
    the file watcher and the client's own periodic reload from its cache are left idle, so
    no background reload can race a flip (one that read the cache just before a flip could
    otherwise put the old values back for a second)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._write(tenant_id=None, flags=Flags())
        idle = 24 * 3600
        self.client = FlagClient(toggles_file=path, refresh_interval=idle, watch_interval=idle)

    def set(self, tenant_id: int, flags: Flags) -> None:
        """Make the client evaluate exactly `flags` for this tenant, now."""
        self._write(tenant_id, flags)
        self.client.reload()
        evaluated = self.client.flags_for(tenant_id)
        assert evaluated == flags, f"toggle file says {flags}, the client evaluates {evaluated}"

    def _write(self, tenant_id: int | None, flags: Flags) -> None:
        definitions = json.loads(TOGGLES_FILE.read_text())
        tenants = [] if tenant_id is None else [str(tenant_id)]
        for feature in definitions["features"]:
            if feature["name"] == Toggle.DUAL_WRITE:
                feature["enabled"] = flags.dual_write  # the kill switch is global
            if feature["name"] == Toggle.READ_TABLE:
                values = tenants if flags.read_table else []
                feature["strategies"][0]["constraints"][0]["values"] = values
            if feature["name"] == Toggle.SHADOW_COMPARE:
                values = tenants if flags.shadow_compare else []
                feature["strategies"][0]["constraints"][0]["values"] = values
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(definitions))
        os.replace(temporary, self.path)

    def close(self) -> None:
        self.client.close()


# How long a write injected into verify may take before it is declared blocked by verify
# itself (a deadlock between the test's two sides, not a timing expectation: it takes
# milliseconds when it is not blocked).
INJECTED_WRITE_BUDGET_S = 120.0


@dataclass
class InjectedWrite:
    """What happened to the write injected into a verify."""

    ran: bool = False
    blocked: bool = False
    error: BaseException | None = None
    worker: threading.Thread | None = None

    def finish(self) -> None:
        """Wait for a write that verify had blocked (verify is over now), then raise what
        the write raised."""
        if self.worker is not None:
            self.worker.join(INJECTED_WRITE_BUDGET_S)
        if self.error is not None:
            raise self.error


@contextmanager
def write_inside_verify(engine: Engine, write: Callable[[], None]) -> Iterator[InjectedWrite]:
    """Run `write` once, after verify's comparison snapshot has ended and before verify
    records its verdict: exactly when the connection that built verify's temporary
    `product_images` goes back to the pool (its transaction is over by then, so verify
    holds no lock the write could wait for). Deterministic: no sleep, no thread race. If a
    later verify no longer returns that connection before recording, the write simply lands
    after it, which is an ordinary sequential write."""
    outcome = InjectedWrite()
    snapshot_connections: set[int] = set()

    def note_snapshot(
        conn: object, cursor: Any, statement: str, *_args: object, **_kwargs: object
    ) -> None:
        if "CREATE TEMP TABLE product_images" in statement:
            snapshot_connections.add(id(cursor.connection))

    def on_checkin(dbapi_connection: object, _record: object) -> None:
        if outcome.ran or id(dbapi_connection) not in snapshot_connections:
            return
        outcome.ran = True

        def run() -> None:
            try:
                write()
            except BaseException as exc:  # raised again by the caller, not inside the pool
                outcome.error = exc

        outcome.worker = threading.Thread(target=run, name="write-inside-verify")
        outcome.worker.start()
        outcome.worker.join(INJECTED_WRITE_BUDGET_S)
        outcome.blocked = outcome.worker.is_alive()

    event.listen(engine, "before_cursor_execute", note_snapshot)
    event.listen(engine, "checkin", on_checkin)
    try:
        yield outcome
    finally:
        event.remove(engine, "checkin", on_checkin)
        event.remove(engine, "before_cursor_execute", note_snapshot)
