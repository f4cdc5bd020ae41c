"""The per-tenant migration state that guards the switch (`image_migration_state`): the
verified state, the drift that clears it, the canonical and contracted stamps, and the log of
products written outside the dual-write (the safety net).

Every write of `verified_at`, `drift_found_at`, `drift_generation`, `canonical_at` and
`contracted_at` goes through here (or through the safety net's trigger function,
backfill/sql/safety_net.sql, which does the same as `record_drift`). The rule that makes
verify safe against writes racing it: marking a tenant verified is a compare-and-set on
`drift_generation`, which every drift moves on in the drifting transaction itself (see
`mark_verified`).

Over 300 lines because the safety net's triggers, the drift and the compare-and-set are one
protocol (every drift moves the generation the compare-and-set reads).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Column, Connection, Engine, MetaData, Table, text
from sqlalchemy.orm import Session

from app.core.database import tenant_schema, unit_of_work
from app.repositories.tenant_facts import tenant_facts

Bind = Connection | Session

BACKFILL_TABLES = (
    "product_images",
    "backfill_runs",
    "backfill_ranges",
    "image_migration_state",
)
"""The tables a tenant's schema has once migrated far enough for the backfill."""

WRITER_SETTING = "pim.images_writer"
"""Transaction-local setting a writer that keeps both representations equal declares; the
safety net's triggers skip its writes."""

CHANGED_PRODUCTS = Table(
    "changed_products", MetaData(), Column("product_id", BigInteger, primary_key=True)
)
"""The safety net's log, for ORM statements (tenant-bound by schema_translate_map; a
MetaData of its own, outside the models, as the table has no writer in Python)."""

_TRIGGERS = (
    (
        "products_images_updated_outside_dual_write",
        "AFTER UPDATE OF images ON {schema}.products FOR EACH ROW "
        "WHEN (OLD.images IS DISTINCT FROM NEW.images "
        "AND coalesce(current_setting('pim.images_writer', true), '') = '')",
    ),
    (
        "products_images_inserted_outside_dual_write",
        "AFTER INSERT ON {schema}.products FOR EACH ROW "
        "WHEN (NEW.images IS DISTINCT FROM '[]'::jsonb "
        "AND coalesce(current_setting('pim.images_writer', true), '') = '')",
    ),
)


@dataclass(frozen=True)
class ChangedProduct:
    """A product whose `images` were written outside the dual-write, and by whom."""

    product_id: int
    generation: int
    writer: str
    changed_at: datetime


def declare_writer(bind: Bind, writer: str) -> None:
    """Tell the safety net that this transaction's writes of `products.images` keep the
    table equal to the JSONB (the dual-write, canonicalize) or are history (seeds); ''
    withdraws it (the kill switch's writes must be caught)."""
    bind.execute(
        text("SELECT set_config(:name, :writer, true)"), {"name": WRITER_SETTING, "writer": writer}
    )


_TRUNCATE_TRIGGER = "product_images_truncated"


def install_triggers(bind: Bind, schema: str) -> None:
    """Create the safety net's triggers on a tenant's `products` (quoted schema)."""
    for name, definition in _TRIGGERS:
        bind.execute(
            text(
                f"CREATE TRIGGER {name} {definition.format(schema=schema)} "
                "EXECUTE FUNCTION public.pim_images_written_outside()"
            )
        )


def install_truncate_trigger(bind: Bind, schema: str) -> None:
    """A TRUNCATE of the tenant's `product_images` records drift (it stays through the
    contract: the table is kept)."""
    bind.execute(
        text(
            f"CREATE TRIGGER {_TRUNCATE_TRIGGER} AFTER TRUNCATE ON {schema}.product_images "
            "FOR EACH STATEMENT EXECUTE FUNCTION public.pim_images_table_truncated()"
        )
    )


def remove_triggers(bind: Bind, schema: str) -> None:
    """Drop them (the contract drops the column they watch)."""
    for name, _ in _TRIGGERS:
        bind.execute(text(f"DROP TRIGGER IF EXISTS {name} ON {schema}.products"))


def has_safety_net(bind: Bind, schema: str) -> bool:
    """Whether the tenant's schema has the changed-products log (revision 0010 applied)."""
    return bool(
        bind.execute(
            text("SELECT to_regclass(:name) IS NOT NULL"), {"name": f"{schema}.changed_products"}
        ).scalar_one()
    )


def record_drift(bind: Bind, schema: str, reason: str) -> bool:
    """The table may no longer equal the JSONB: clear the verified state (read-table's
    interlock sends reads back to the JSONB), stamp the drift and move the generation on,
    in the caller's transaction. Unconditional: a verify running now must not mark the
    tenant verified from a snapshot taken before this. True when it was verified until now."""
    if not bind.execute(
        text("SELECT to_regclass(:state) IS NOT NULL"),
        {"state": f"{schema}.image_migration_state"},
    ).scalar():
        return False  # a schema before the backfill's revision was never verified
    was_verified = bind.execute(
        text(
            f"UPDATE {schema}.image_migration_state AS s SET verified_at = NULL, "
            "drift_found_at = now(), updated_at = now(), "
            "drift_generation = s.drift_generation + 1, "
            "verification = coalesce(s.verification, '{}'::jsonb) "
            "|| jsonb_build_object('drift', CAST(:reason AS text)) "
            f"FROM (SELECT verified_at FROM {schema}.image_migration_state WHERE id = 1 "
            "FOR UPDATE) AS before WHERE s.id = 1 RETURNING before.verified_at IS NOT NULL"
        ),
        {"reason": reason},
    ).scalar()
    return bool(was_verified)


def drift_generation(bind: Bind, schema: str) -> int:
    """The tenant's drift generation as the caller's snapshot sees it."""
    return int(
        bind.execute(
            text(f"SELECT drift_generation FROM {schema}.image_migration_state WHERE id = 1")
        ).scalar_one()
    )


def mark_verified(bind: Bind, schema: str, *, seen_generation: int, summary: str) -> bool:
    """Mark the tenant verified, only if no drift was recorded since the snapshot that saw
    `seen_generation` (run at READ COMMITTED, after that snapshot's comparison). A drifting
    transaction moves the generation on with its first statement on the state row, so it has
    either committed (the generation differs), or holds the row (this waits, then sees it),
    or will clear the state after this commits. The changed-products entries that snapshot
    covered go with it. False: something drifted meanwhile; nothing was written."""
    marked = bind.execute(
        text(
            f"UPDATE {schema}.image_migration_state SET verified_at = now(), "
            # The last drift's reason stays beside the new summary: the console shows when
            # and why the tenant last drifted, verified again or not.
            "verification = CAST(:summary AS jsonb) || jsonb_strip_nulls("
            "jsonb_build_object('drift', verification -> 'drift')), updated_at = now() "
            "WHERE id = 1 AND drift_generation = :seen"
        ),
        {"summary": summary, "seen": seen_generation},
    ).rowcount  # type: ignore[attr-defined]
    if not marked:
        return False
    if has_safety_net(bind, schema):
        bind.execute(
            text(f"DELETE FROM {schema}.changed_products WHERE generation <= :seen"),
            {"seen": seen_generation},
        )
    return True


def mark_new_tenant_verified(bind: Bind, schema: str, tenant_id: int) -> None:
    """A tenant created a moment ago has no product, so nothing to compare: verified at once
    (the compare-and-set verify uses, on its own generation; the counts verify would store).
    ValueError if it has products: that tenant needs `backfill verify`."""
    if bind.execute(text(f"SELECT EXISTS (SELECT 1 FROM {schema}.products)")).scalar():
        raise ValueError(f"tenant {tenant_id} has products: run `python -m backfill verify`")
    counts = [
        "products",
        "jsonb_elements",
        "table_rows",
        "expected_rows",
        "rejected",
        "rejected_unreported",
        "labels",
        "expected_labels",
        "mismatched_products",
    ]
    summary = {"tenant_id": tenant_id, **dict.fromkeys(counts, 0), "mismatches": []}
    summary |= {"since": None, "seconds": 0.0, "raced_by_drift": False, "is_verified": True}
    seen = drift_generation(bind, schema)
    if not mark_verified(bind, schema, seen_generation=seen, summary=json.dumps(summary)):
        raise RuntimeError(f"tenant {tenant_id} drifted while being created")


def record_failed_verification(bind: Bind, schema: str, summary: str) -> None:
    """A verification found differences: that is drift too."""
    record_drift(bind, schema, "verify found differences")
    bind.execute(
        text(
            f"UPDATE {schema}.image_migration_state SET verification = "
            "CAST(:summary AS jsonb) || jsonb_build_object('drift', verification -> 'drift') "
            "WHERE id = 1"
        ),
        {"summary": summary},
    )


def verified_at(bind: Bind, schema: str, *, hold: bool = False) -> datetime | None:
    """When the tenant was last verified clean (None: not verified now). `hold`: FOR SHARE,
    so a write that would clear it (a drift takes the row FOR UPDATE first) waits for the
    caller's transaction."""
    lock = " FOR SHARE" if hold else ""
    value = bind.execute(
        text(f"SELECT verified_at FROM {schema}.image_migration_state WHERE id = 1{lock}")
    ).scalar()
    return value if isinstance(value, datetime) else None


def is_verified(bind: Bind, schema: str, *, hold: bool = False) -> bool:
    """Whether the tenant is verified now (`hold`: as in `verified_at`)."""
    return verified_at(bind, schema, hold=hold) is not None


def mark_canonical(bind: Bind, schema: str) -> None:
    """Every product's JSONB is what its rows rebuild (canonicalize found none left)."""
    bind.execute(
        text(
            f"UPDATE {schema}.image_migration_state SET canonical_at = now(), "
            "updated_at = now() WHERE id = 1"
        )
    )


def clear_canonical(bind: Bind, schema: str) -> None:
    """The JSONB may hold bytes the rows do not rebuild again (a backup restored)."""
    bind.execute(
        text(
            f"UPDATE {schema}.image_migration_state SET canonical_at = NULL, "
            "updated_at = now() WHERE id = 1"
        )
    )


def mark_contracted(bind: Bind, schema: str, *, contracted: bool) -> None:
    """`products.images` dropped (the contract revision) or back (its downgrade)."""
    stamp = "now()" if contracted else "NULL"
    bind.execute(
        text(
            f"UPDATE {schema}.image_migration_state SET contracted_at = {stamp}, "
            "updated_at = now() WHERE id = 1"
        )
    )


def changed_products(
    bind: Bind,
    schema: str,
    *,
    product_ids: Sequence[int] | None = None,
    latest: int | None = None,
) -> list[ChangedProduct]:
    """The log of products written outside the dual-write, by product (or those of
    `product_ids`); with `latest`, only that many, newest first."""
    if not has_safety_net(bind, schema):
        return []
    where = "WHERE product_id = ANY(:ids)" if product_ids is not None else ""
    order = "changed_at DESC, product_id LIMIT :latest" if latest is not None else "product_id"
    rows = bind.execute(
        text(
            f"SELECT product_id, generation, writer, changed_at FROM {schema}.changed_products "
            f"{where} ORDER BY {order}"
        ),
        {"ids": list(product_ids or []), "latest": latest},
    ).all()
    return [ChangedProduct(int(r[0]), int(r[1]), str(r[2]), r[3]) for r in rows]


def forget_changes(bind: Bind, schema: str, product_ids: Sequence[int]) -> None:
    """Drop the log entries of products whose rows were just rebuilt under their locks."""
    if has_safety_net(bind, schema):
        bind.execute(
            text(f"DELETE FROM {schema}.changed_products WHERE product_id = ANY(:ids)"),
            {"ids": list(product_ids)},
        )


@dataclass(frozen=True)
class Drift:
    """What the operator sees of a tenant's drift: the last one recorded and the products
    written outside the dual-write that no verify or repair has covered yet."""

    found_at: datetime | None
    reason: str | None
    pending: int
    sample: tuple[ChangedProduct, ...]


def drift(bind: Bind, schema: str, *, sample: int = 20) -> Drift:
    """The tenant's last drift and its pending changed products (the latest `sample`)."""
    found_at, reason = bind.execute(
        text(
            f"SELECT drift_found_at, verification ->> 'drift' "
            f"FROM {schema}.image_migration_state WHERE id = 1"
        )
    ).one()
    if not has_safety_net(bind, schema):
        return Drift(found_at, reason, 0, ())
    pending = int(
        bind.execute(text(f"SELECT count(*) FROM {schema}.changed_products")).scalar_one()
    )
    logged = tuple(changed_products(bind, schema, latest=sample))
    return Drift(found_at, reason, pending, logged)


def is_ready(engine: Engine, tenant_id: int) -> bool:
    """Whether the tenant's schema has the tables the backfill writes (migrated to head)."""
    schema = tenant_schema(tenant_id)
    with engine.connect() as connection:
        present = connection.execute(
            text(
                "SELECT count(*) FROM pg_tables WHERE schemaname = :schema "
                "AND tablename = ANY(:tables)"
            ),
            {"schema": schema, "tables": list(BACKFILL_TABLES)},
        ).scalar_one()
    return int(present) == len(BACKFILL_TABLES)


def unverified_tenants(engine: Engine, tenants: Sequence[int]) -> list[int]:
    """The tenants read-table must not be enabled for (not migrated, or not verified): the
    check the toggle store's interlock is given (flags.store.toggle_store)."""
    unverified = []
    for tenant_id in tenants:
        if not is_ready(engine, tenant_id):
            unverified.append(tenant_id)
            continue
        with unit_of_work(engine, tenant_id) as session:
            if not tenant_facts(session).is_verified:
                unverified.append(tenant_id)
    return unverified
