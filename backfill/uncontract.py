"""The way back from a contract (the contract revision's downgrade), without holding the
tenant: `products.images` rebuilt from the table in a staging column, batch by batch with
the dual-write on and reads still served, then renamed in one brief switch. Split from
backfill/contract.py, which holds the forward step (backups, the canonical rewrite, the
guards); the rebuild expression is shared with it (`rebuilt`)."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy import Connection, text

from app.repositories import migration_state
from backfill.contract import rebuilt

log = structlog.get_logger("backfill.uncontract")

BATCH = 1_000  # products per fill batch (read at call time: tests lower it)

STAGING = "images_rebuilding"
"""The column the uncontract fills, under a name nothing else reads: until it is renamed
`images` at the very end, the tenant is contracted for everyone (the app, every backfill
command), because `products.images` does not exist. Its presence is the uncontract's state:
a rerun resumes from it."""

_NOT_NULL = "images_rebuilding_not_null"
_SYNC = "pim_images_rebuilding_sync"

# While the column is being filled, every write of a product's rows brings its staging JSONB
# up to date in the writer's own transaction (the rows and the JSONB commit together), once
# the batch has filled it; a product not filled yet is left to its batch, which reads the rows
# under the product's row lock. One statement trigger per event (an event's transition
# tables are its own); plpgsql resolves `new_rows`/`old_rows` when a branch runs.
_SYNC_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.{sync}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE {schema}.products AS p SET {staging} = {rebuilt}
    WHERE p.id IN (SELECT product_id FROM new_rows) AND p.{staging} IS NOT NULL;
  ELSIF TG_OP = 'DELETE' THEN
    UPDATE {schema}.products AS p SET {staging} = {rebuilt}
    WHERE p.id IN (SELECT product_id FROM old_rows) AND p.{staging} IS NOT NULL;
  ELSE
    UPDATE {schema}.products AS p SET {staging} = {rebuilt}
    WHERE p.id IN (SELECT product_id FROM new_rows UNION SELECT product_id FROM old_rows)
      AND p.{staging} IS NOT NULL;
  END IF;
  RETURN NULL;
END $$"""

_SYNC_TRIGGERS = (
    ("insert", "AFTER INSERT", "NEW TABLE AS new_rows"),
    ("update", "AFTER UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("delete", "AFTER DELETE", "OLD TABLE AS old_rows"),
)


@dataclass
class UncontractResult:
    """What one run of the uncontract did (a rerun after an interruption fills the rest)."""

    filled: int = 0
    batches: int = 0
    resumed: bool = False


def uncontract(bind: Connection, schema: str) -> UncontractResult:
    """The contract's downgrade, without holding the tenant: the way back from a contract.

    `bind` is the migration's transaction for the tenant; it only does the last step, so
    the switch commits with the version table. The steps before it commit on connections
    of their own (they survive an interruption, and a rerun resumes), each short:

    1. add `images_rebuilding` (nullable, no default for the existing rows: a catalogue
       change) with the triggers that keep it in step with the rows (brief ACCESS
       EXCLUSIVE, within lock_timeout);
    2. fill it from the rows in keyset batches, each its own transaction under the batch's
       row locks (reads are never blocked; a write of a product in the batch waits for it);
    3. check the counts, then prove it NOT NULL with a CHECK added NOT VALID (brief ACCESS
       EXCLUSIVE, no scan) and validated (SHARE UPDATE EXCLUSIVE: reads and writes go on);
    4. in `bind`: ACCESS EXCLUSIVE on products and product_images, drop the triggers,
       SET NOT NULL (the valid CHECK spares the scan), rename it `images`, reinstall the
       safety net, clear `contracted_at`. The next request sees the column and reads the
       JSONB again.
    """
    if _has_column(bind, schema, "images"):
        raise RuntimeError(f"{schema}.products already has `images`: not contracted")
    lock_timeout = str(bind.execute(text("SELECT current_setting('lock_timeout')")).scalar_one())
    result = UncontractResult()
    with bind.engine.connect() as own:
        result.resumed = _has_column(own, schema, STAGING)
        own.rollback()
        if not result.resumed:
            with own.begin():
                _set_lock_timeout(own, lock_timeout)
                _add_staging_column(own, schema)
        _fill(own, schema, lock_timeout, result)
        with own.begin():
            _check_counts(own, schema)
        _prove_not_null(own, schema, lock_timeout)
    _switch(bind, schema)
    log.info(
        "uncontract.done",
        schema=schema,
        filled=result.filled,
        batches=result.batches,
        resumed=result.resumed,
    )
    return result


def _has_column(connection: Connection, schema: str, column: str) -> bool:
    return bool(
        connection.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(:t) "
                "AND attname = :column AND NOT attisdropped)"
            ),
            {"t": f"{schema}.products", "column": column},
        ).scalar_one()
    )


def _set_lock_timeout(connection: Connection, lock_timeout: str) -> None:
    connection.execute(
        text("SELECT set_config('lock_timeout', :value, true)"), {"value": lock_timeout}
    )


def _add_staging_column(connection: Connection, schema: str) -> None:
    """Step 1, one transaction: the column and its triggers appear together, so no write
    happens between them (ADD COLUMN waits for the requests in flight, and holds back new
    ones for the few milliseconds the catalogue changes take)."""
    connection.execute(text(f"ALTER TABLE {schema}.products ADD COLUMN {STAGING} jsonb"))
    # Products created from now on have no rows yet: '[]' is their rebuilt JSONB (a default
    # set after ADD COLUMN applies to new rows only: the existing ones stay NULL, to fill).
    connection.execute(
        text(f"ALTER TABLE {schema}.products ALTER COLUMN {STAGING} SET DEFAULT '[]'::jsonb")
    )
    connection.execute(
        text(
            _SYNC_FUNCTION.format(
                schema=schema, sync=_SYNC, staging=STAGING, rebuilt=rebuilt(schema)
            )
        )
    )
    for event, timing, referencing in _SYNC_TRIGGERS:
        connection.execute(
            text(
                f"CREATE TRIGGER {_SYNC}_{event} {timing} ON {schema}.product_images "
                f"REFERENCING {referencing} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION {schema}.{_SYNC}()"
            )
        )


def fill_batch(connection: Connection, schema: str, *, after: int, limit: int) -> list[int]:
    """Step 2, one batch (in the caller's transaction): the next products not filled yet,
    locked, then filled from their rows. The UPDATE is a statement of its own, so its
    snapshot is taken once every lock is held: it sees every write committed before."""
    ids = list(
        connection.execute(
            text(
                f"SELECT id FROM {schema}.products WHERE id > :after AND {STAGING} IS NULL "
                "ORDER BY id LIMIT :n FOR UPDATE"
            ),
            {"after": after, "n": limit},
        ).scalars()
    )
    if ids:
        connection.execute(
            text(
                f"UPDATE {schema}.products AS p SET {STAGING} = {rebuilt(schema)} "
                f"WHERE p.id = ANY(:ids) AND p.{STAGING} IS NULL"
            ),
            {"ids": ids},
        )
    return ids


def _fill(own: Connection, schema: str, lock_timeout: str, result: UncontractResult) -> None:
    """Step 2: every product not filled yet, in keyset batches of BATCH (read at call time),
    each its own transaction. Products created meanwhile got '[]' from the default and
    every write since kept theirs in step: one pass leaves no NULL."""
    after = 0
    while True:
        with own.begin():
            _set_lock_timeout(own, lock_timeout)
            ids = fill_batch(own, schema, after=after, limit=BATCH)
        if not ids:
            return
        result.filled += len(ids)
        result.batches += 1
        after = ids[-1]
        if result.batches % 50 == 0:
            log.info("uncontract.progress", schema=schema, filled=result.filled, after=after)


def _check_counts(connection: Connection, schema: str) -> None:
    """Every product filled, and as many elements as the table has rows (one statement, one
    snapshot: a write changes both in one transaction)."""
    unfilled, elements, rows = connection.execute(
        text(
            f"SELECT (SELECT count(*) FROM {schema}.products WHERE {STAGING} IS NULL), "
            f"(SELECT coalesce(sum(jsonb_array_length({STAGING})), 0) FROM {schema}.products), "
            f"(SELECT count(*) FROM {schema}.product_images)"
        )
    ).one()
    if unfilled or int(elements) != int(rows):
        raise RuntimeError(
            f"rebuilt JSONB holds {elements} element(s) but the table {rows} row(s) "
            f"({unfilled} product(s) not filled): the tenant stays contracted; "
            f"{schema}.products.{STAGING} is kept for a look"
        )


def _prove_not_null(own: Connection, schema: str, lock_timeout: str) -> None:
    """Step 3: a CHECK that proves the column NOT NULL, so the switch's SET NOT NULL does not
    scan the table under its lock. Added NOT VALID (catalogue only, brief ACCESS EXCLUSIVE),
    then validated in a transaction of its own (SHARE UPDATE EXCLUSIVE: reads and writes go
    on while it scans). Each skipped when a previous run got that far."""
    validated = own.execute(
        text(
            "SELECT convalidated FROM pg_constraint WHERE conrelid = to_regclass(:t) "
            "AND conname = :name"
        ),
        {"t": f"{schema}.products", "name": _NOT_NULL},
    ).scalar()
    own.rollback()
    if validated is None:
        with own.begin():
            _set_lock_timeout(own, lock_timeout)
            own.execute(
                text(
                    f"ALTER TABLE {schema}.products ADD CONSTRAINT {_NOT_NULL} "
                    f"CHECK ({STAGING} IS NOT NULL) NOT VALID"
                )
            )
    if not validated:
        with own.begin():
            _set_lock_timeout(own, lock_timeout)
            own.execute(text(f"ALTER TABLE {schema}.products VALIDATE CONSTRAINT {_NOT_NULL}"))


def _switch(bind: Connection, schema: str) -> None:
    """Step 4, in the migration's transaction: catalogue changes only, under ACCESS
    EXCLUSIVE on products and product_images (dropping a trigger takes it on its table),
    both taken first in one statement within lock_timeout (shorter than deadlock_timeout: a
    session holding product_images and wanting products makes this time out and the
    migration loop retry, finding steps 1 to 3 done, rather than deadlock). Every request
    reads products first, so none is in flight once the first lock is held."""
    bind.execute(
        text(f"LOCK TABLE {schema}.products, {schema}.product_images IN ACCESS EXCLUSIVE MODE")
    )
    bind.execute(text(f"DROP FUNCTION {schema}.{_SYNC}() CASCADE"))  # and its triggers
    # Separate statements: ALTER TABLE drops constraints before it sets NOT NULL, so the
    # CHECK must still be there to spare the scan.
    bind.execute(text(f"ALTER TABLE {schema}.products ALTER COLUMN {STAGING} SET NOT NULL"))
    bind.execute(text(f"ALTER TABLE {schema}.products DROP CONSTRAINT {_NOT_NULL}"))
    bind.execute(text(f"ALTER TABLE {schema}.products RENAME COLUMN {STAGING} TO images"))
    if migration_state.has_safety_net(bind, schema):
        migration_state.install_triggers(bind, schema)
    migration_state.mark_contracted(bind, schema, contracted=False)
