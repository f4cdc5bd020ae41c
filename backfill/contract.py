"""The last step of the strangler: backups of `products.images`, its canonical rewrite
(every product's JSONB exactly what the table rebuilds) and the guards the contract revision
runs in the tenant's transaction. Over 300 lines because the three are one step's parts: the
guards take the backup and prove the rewrite inside the same transaction. The way back (the
revision's downgrade) is backfill/uncontract.py.

Why a canonical rewrite first: a legacy element (`{"url", "order", "created_at"}`) cannot be
rebuilt byte for byte from the table; once every product's JSONB is exactly what the table
rebuilds (the dual-write's own format, 12 keys), "contract then downgrade gives back the same
JSONB" holds and the contract can prove it before dropping anything. The original bytes,
rejected elements included, stay in a backup.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog
from sqlalchemy import Connection, Engine, text

from app.core.database import quoted_schema, tenant_schema
from app.repositories import migration_state
from app.repositories.migration_state import backups
from app.repositories.migration_state.backups import Backup
from backfill.tenants import has_images_column
from backfill.verify import VerificationReport, compare_into_report

log = structlog.get_logger("backfill.contract")

# One product's JSONB rebuilt from its rows, exactly as app.images.image_to_element writes it
# (timestamps in UTC with microseconds and "+00:00"); `p` is the products row.
REBUILT = """coalesce((
  SELECT jsonb_agg(jsonb_build_object(
           'id', i.id::text, 'url', i.url, 'order', i."order", 'is_label', i.is_label,
           'alt_text', i.alt_text, 'tags', to_jsonb(i.tags), 'mime_type', i.mime_type,
           'file_size', i.file_size, 'width', i.width, 'height', i.height,
           'created_at', to_char(i.created_at AT TIME ZONE 'UTC',
                                 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00',
           'updated_at', to_char(i.updated_at AT TIME ZONE 'UTC',
                                 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00')
         ORDER BY i."order")
  FROM {schema}.product_images AS i WHERE i.product_id = p.id), '[]'::jsonb)"""

BATCH = 1_000
LONG_TRANSACTION_S = 5


class ContractRefused(RuntimeError):
    """A guard said no; the tenant is left untouched."""


def rebuilt(schema: str) -> str:
    """The rebuild expression for a quoted schema."""
    return REBUILT.format(schema=schema)


# --- backups ---------------------------------------------------------------------------------


def take_backup(connection: Connection, schema: str, reason: str) -> Backup:
    """Copy every product's `images` (byte for byte) in the caller's transaction."""
    taken = backups.take(connection, schema, reason)
    log.info("backup.taken", schema=schema, backup=taken.id, products=taken.products, reason=reason)
    return taken


def backup_tenant(engine: Engine, tenant_id: int, reason: str = "on demand") -> Backup:
    """`python -m backfill backup --tenant N`: a copy in its own transaction."""
    schema = quoted_schema(tenant_schema(tenant_id))
    with engine.begin() as connection:
        if not has_images_column(connection, schema):
            raise ContractRefused(f"tenant {tenant_id} is contracted: no products.images to copy")
        return take_backup(connection, schema, reason)


def list_backups(engine: Engine, tenant_id: int) -> list[Backup]:
    with engine.connect() as connection:
        return backups.listed(connection, quoted_schema(tenant_schema(tenant_id)))


def restore_backup(engine: Engine, tenant_id: int, backup_id: int) -> int:
    """Put a backup's JSONB back, product by product, under the row locks; products created
    since keep theirs. Refused on a contracted tenant (uncontract first). The table is not
    touched: verify afterwards says whether the two still agree."""
    schema = quoted_schema(tenant_schema(tenant_id))
    with engine.begin() as connection:
        if not has_images_column(connection, schema):
            raise ContractRefused(f"tenant {tenant_id} is contracted: uncontract it first")
        if not backups.exists(connection, schema, backup_id):
            raise ContractRefused(f"tenant {tenant_id} has no backup {backup_id}")
        restored_ids = list(
            connection.execute(
                text(
                    f"WITH locked AS (SELECT p.id FROM {schema}.products AS p "
                    f"JOIN {schema}.image_backup_rows AS b ON b.product_id = p.id "
                    "AND b.backup_id = :id ORDER BY p.id FOR UPDATE OF p) "
                    f"UPDATE {schema}.products AS p SET images = b.images, updated_at = now() "
                    f"FROM {schema}.image_backup_rows AS b, locked "
                    "WHERE b.backup_id = :id AND b.product_id = p.id AND locked.id = p.id "
                    "AND p.images IS DISTINCT FROM b.images RETURNING p.id"
                ),
                {"id": backup_id},
            ).scalars()
        )
        # The restored JSONB is the truth again: their rows go (rows equal the JSONB or are
        # absent), or the next write would rebuild the JSONB from them; `backfill run`
        # brings them back from the restored JSONB.
        connection.execute(
            text(f"DELETE FROM {schema}.product_images WHERE product_id = ANY(:ids)"),
            {"ids": restored_ids},
        )
        restored = len(restored_ids)
        # Drift, whatever was restored: a verify running now must not mark the tenant
        # verified from a snapshot taken before the restore.
        migration_state.record_drift(connection, schema, f"backup {backup_id} restored")
        migration_state.clear_canonical(connection, schema)
    log.warning("backup.restored", tenant=tenant_id, backup=backup_id, products=restored)
    return int(restored)


def delete_backup(engine: Engine, tenant_id: int, backup_id: int) -> bool:
    with engine.begin() as connection:
        return backups.delete(connection, quoted_schema(tenant_schema(tenant_id)), backup_id)


# --- canonical rewrite -----------------------------------------------------------------------


def not_canonical(connection: Connection, schema: str, *, since: str | None = None) -> int:
    """Products (updated since `since`, or all) whose JSONB differs from what the table
    rebuilds."""
    recent = "AND p.updated_at >= CAST(:since AS timestamptz)" if since else ""
    return int(
        connection.execute(
            text(
                f"SELECT count(*) FROM {schema}.products AS p "
                f"WHERE p.images IS DISTINCT FROM {rebuilt(schema)} {recent}"
            ),
            {"since": since} if since else {},
        ).scalar_one()
    )


@dataclass
class CanonicalResult:
    tenant_id: int
    rewritten: int = 0
    backup: Backup | None = None
    seconds: float = 0.0


def canonicalize_tenant(
    engine: Engine, tenant_id: int, *, batch: int = BATCH, lock_timeout_ms: int = 200
) -> CanonicalResult:
    """Rewrite every product's JSONB into exactly what its rows rebuild, in keyset batches,
    each its own transaction under the batch's row locks. Only for a verified tenant (the
    rows are then known to hold every image); a backup of the original bytes comes first."""
    started = time.monotonic()
    schema = quoted_schema(tenant_schema(tenant_id))
    result = CanonicalResult(tenant_id)
    with engine.begin() as connection:
        if not has_images_column(connection, schema):
            raise ContractRefused(f"tenant {tenant_id} is contracted: its JSONB is gone")
        if not migration_state.is_verified(connection, schema):
            raise ContractRefused(
                f"tenant {tenant_id} is not verified: run `python -m backfill verify` first"
            )
        if not_canonical(connection, schema):
            result.backup = take_backup(connection, schema, "before canonicalize")
    after = 0
    while True:
        with engine.begin() as connection:
            connection.execute(text(f"SET LOCAL lock_timeout = '{int(lock_timeout_ms)}ms'"))
            ids = list(
                connection.execute(
                    text(
                        f"SELECT id FROM {schema}.products WHERE id > :after ORDER BY id "
                        "LIMIT :n FOR UPDATE"
                    ),
                    {"after": after, "n": batch},
                ).scalars()
            )
            if not ids:
                break
            _still_verified(connection, schema, tenant_id)
            result.rewritten += rewrite_batch(connection, schema, ids)
            after = ids[-1]
    with engine.begin() as connection:
        left = not_canonical(connection, schema)
        if left == 0:
            migration_state.mark_canonical(connection, schema)
    result.seconds = time.monotonic() - started
    log.info(
        "canonicalize.done",
        tenant=tenant_id,
        rewritten=result.rewritten,
        left=left,
        seconds=round(result.seconds, 3),
    )
    return result


def _still_verified(connection: Connection, schema: str, tenant_id: int) -> None:
    """Under the batch's row locks: the tenant is still verified (FOR SHARE: a write that
    clears it, e.g. one with the dual-write kill switch on, which drops its product's rows,
    waits for this batch, and the next batch sees it and stops before rebuilding that
    product's JSONB from rows that are gone)."""
    if not migration_state.is_verified(connection, schema, hold=True):
        raise ContractRefused(
            f"tenant {tenant_id} lost its verified state during canonicalize (drift or the "
            "dual-write kill switch): nothing more rewritten; verify, then run it again"
        )


def rewrite_batch(connection: Connection, schema: str, ids: list[int]) -> int:
    """One batch's JSONB rewritten as its rows rebuild it (caller holds the row locks)."""
    # Both representations stay equal: the safety net's triggers let these writes pass.
    migration_state.declare_writer(connection, "canonicalize")
    return int(
        connection.execute(
            text(
                f"UPDATE {schema}.products AS p SET images = {rebuilt(schema)} "
                f"WHERE p.id = ANY(:ids) AND p.images IS DISTINCT FROM {rebuilt(schema)}"
            ),
            {"ids": ids},
        ).rowcount
    )


# --- the contract revision's guards and its downgrade ------------------------------------------


def long_transactions(connection: Connection, schema: str) -> list[str]:
    """Other sessions in a transaction for more than a few seconds that hold a lock on the
    tenant's products or images: the contract reports them instead of queueing behind."""
    rows = connection.execute(
        text(
            "SELECT DISTINCT a.pid, a.application_name, a.state, "
            "round(extract(epoch FROM now() - a.xact_start)) AS seconds, left(a.query, 80) AS q "
            "FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid "
            "WHERE l.relation IN (to_regclass(:products), to_regclass(:images)) "
            "AND a.pid <> pg_backend_pid() AND a.xact_start < now() - make_interval(secs => :s)"
        ),
        {
            "products": f"{schema}.products",
            "images": f"{schema}.product_images",
            "s": LONG_TRANSACTION_S,
        },
    ).all()
    return [
        f"pid {r.pid} ({r.application_name or 'unnamed'}, {r.state}, {int(r.seconds)} s: {r.q})"
        for r in rows
    ]


def check_contract(connection: Connection, schema: str) -> Backup:
    """Every guard, in the contract's transaction; raises ContractRefused naming the reason.
    Ends with the backup complete, so the drop that follows is known to be reversible.

    The full checks and the backup run first without blocking anyone. Then the contract
    takes the ACCESS EXCLUSIVE lock the drop needs anyway (bounded by lock_timeout, retried
    by the migration loop) and checks again, and refreshes the backup, only for the products
    written since it began, so the tenant waits for that short re-check, not the whole
    comparison. (Holding SHARE during the checks and upgrading for the drop would deadlock
    with a request that holds its ACCESS SHARE and then wants to write.)"""
    blockers = long_transactions(connection, schema)
    if blockers:
        raise ContractRefused(
            "long-running transactions hold the tenant's tables: " + "; ".join(blockers)
        )
    if not migration_state.is_verified(connection, schema):
        raise ContractRefused("not verified: run `python -m backfill verify` first")
    # The app stamps updated_at with its own clock when a request starts: look back far
    # enough to cover a request in flight and clock skew.
    began = (
        connection.execute(text("SELECT clock_timestamp() - interval '10 minutes'"))
        .scalar_one()
        .isoformat()
    )
    _no_drift_in_a_snapshot(connection, schema)
    _canonical(connection, schema, since=None)
    backup = take_backup(connection, schema, "before contract")
    connection.execute(text(f"LOCK TABLE {schema}.products IN ACCESS EXCLUSIVE MODE"))
    # Nothing writes now. A write that drifted since the checks (the kill switch, a restore)
    # cleared the verified state: read it again under the lock.
    if not migration_state.is_verified(connection, schema):
        raise ContractRefused("lost its verified state during the checks: verify again")
    # Every write path bumps updated_at (the dual-write does, in the product's transaction).
    _no_drift(connection, schema, since=began)
    _canonical(connection, schema, since=began)
    return backups.refresh(connection, schema, backup, since=began)


def _no_drift_in_a_snapshot(connection: Connection, schema: str) -> None:
    """The full comparison, on a connection of its own in one REPEATABLE READ snapshot (the
    contract's own transaction is READ COMMITTED: its statements would see writes committed
    between them, which looks like drift; the API keeps writing during this phase)."""
    with connection.engine.connect() as snapshot:
        snapshot.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        try:
            _no_drift(snapshot, schema, since=None)
        finally:
            snapshot.rollback()


def _no_drift(connection: Connection, schema: str, *, since: str | None) -> None:
    report = VerificationReport(tenant_id=0, since=since)
    compare_into_report(connection, schema, report)
    if not report.is_verified:
        raise ContractRefused(
            f"drift since the last verify: {report.mismatched_products} product(s) differ "
            f"({', '.join(sorted({m.kind for m in report.mismatches})) or 'counts'}); "
            "run `python -m backfill verify` to see them"
        )


def _canonical(connection: Connection, schema: str, *, since: str | None) -> None:
    left = not_canonical(connection, schema, since=since)
    if left:
        raise ContractRefused(
            f"{left} product(s) hold JSONB the table does not rebuild byte for byte: run "
            "`python -m backfill canonicalize` first"
        )
