"""A tenant's backups of `products.id, images` (`image_backups` and its rows, revision 0008):
taken before canonicalize and before the contract, on demand, and kept until an operator
drops one. The only SQL of those tables; what a backup is for (restore, the contract's
guards) is backfill/contract.py's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

# Elements of a product's `images`: an array's length, anything else (a broken value) one.
_ELEMENTS = (
    "coalesce(sum(CASE jsonb_typeof(images) WHEN 'array' "
    "THEN jsonb_array_length(images) ELSE 1 END), 0)"
)


@dataclass(frozen=True)
class Backup:
    """One copy of a tenant's `products.id, images`."""

    id: int
    reason: str
    products: int
    elements: int
    taken_at: datetime


def take(connection: Connection, schema: str, reason: str) -> Backup:
    """Copy every product's `images` (byte for byte) in the caller's transaction."""
    row = connection.execute(
        text(
            f"INSERT INTO {schema}.image_backups (reason, products, elements) "
            f"SELECT :reason, count(*), {_ELEMENTS} "
            f"FROM {schema}.products RETURNING id, reason, products, elements, taken_at"
        ),
        {"reason": reason},
    ).one()
    connection.execute(
        text(
            f"INSERT INTO {schema}.image_backup_rows (backup_id, product_id, images) "
            f"SELECT :backup, id, images FROM {schema}.products"
        ),
        {"backup": row.id},
    )
    return Backup(int(row.id), row.reason, int(row.products), int(row.elements), row.taken_at)


def listed(connection: Connection, schema: str) -> list[Backup]:
    """The tenant's backups, oldest first."""
    rows = connection.execute(
        text(
            f"SELECT id, reason, products, elements, taken_at FROM {schema}.image_backups "
            "ORDER BY id"
        )
    ).all()
    return [Backup(int(r.id), r.reason, int(r.products), int(r.elements), r.taken_at) for r in rows]


def exists(connection: Connection, schema: str, backup_id: int) -> bool:
    return (
        connection.execute(
            text(f"SELECT 1 FROM {schema}.image_backups WHERE id = :id"), {"id": backup_id}
        ).first()
        is not None
    )


def delete(connection: Connection, schema: str, backup_id: int) -> bool:
    """Drop one backup (its rows go with it); whether there was one."""
    deleted = connection.execute(
        text(f"DELETE FROM {schema}.image_backups WHERE id = :id"), {"id": backup_id}
    ).rowcount
    return bool(deleted)


def refresh(connection: Connection, schema: str, backup: Backup, *, since: str) -> Backup:
    """Bring a backup up to the products as they are now (the caller holds the lock that
    stops writes): products written since `since` copied again, deleted ones dropped."""
    connection.execute(
        text(
            f"INSERT INTO {schema}.image_backup_rows (backup_id, product_id, images) "
            f"SELECT :backup, id, images FROM {schema}.products "
            "WHERE updated_at >= CAST(:since AS timestamptz) "
            "ON CONFLICT (backup_id, product_id) DO UPDATE SET images = EXCLUDED.images"
        ),
        {"backup": backup.id, "since": since},
    )
    connection.execute(
        text(
            f"DELETE FROM {schema}.image_backup_rows AS b WHERE b.backup_id = :backup "
            f"AND NOT EXISTS (SELECT 1 FROM {schema}.products AS p WHERE p.id = b.product_id)"
        ),
        {"backup": backup.id},
    )
    row = connection.execute(
        text(
            f"UPDATE {schema}.image_backups AS b SET products = c.n, elements = c.e "
            f"FROM (SELECT count(*) AS n, {_ELEMENTS} AS e "
            f"FROM {schema}.image_backup_rows WHERE backup_id = :backup) AS c "
            "WHERE b.id = :backup RETURNING b.products, b.elements"
        ),
        {"backup": backup.id},
    ).one()
    return Backup(backup.id, backup.reason, int(row.products), int(row.elements), backup.taken_at)
