"""The one owner of a tenant's migration state: every write of it, and the typed rows read
from it, are here; backfill, flags, the console and the API call these and hold no SQL of
these tables.

- `state` (`image_migration_state`, `changed_products`): verified, drift, canonical and
  contracted; marking verified is the compare-and-set on `drift_generation` that a drift
  racing a verify cannot slip past. Its functions are this package's own names
  (`migration_state.mark_verified(...)`).
- `runs` (`backfill_runs`, `backfill_ranges`): a run's plan, its ranges' checkpoints and
  counters written with their batches, and the roll-up into the run row; `claims`: which
  worker works which range (session advisory locks); `deferred` (`backfill_deferred`): the
  products a range moved past and comes back for.
- `backups` (`image_backups`, `image_backup_rows`): the copies of `products.images`.

Outside it, on purpose: reads that join these tables with the catalogue for a report
(`backfill status`, `tenant_facts`); the safety net's trigger function (SQL, in
backfill/sql/safety_net.sql); and the migrations that create the tables (revision 0004
inserts the one state row, revision 0016's downgrade marks unfinished runs interrupted).
"""

from app.repositories.migration_state import backups, claims, deferred, runs
from app.repositories.migration_state.state import (
    BACKFILL_TABLES,
    CHANGED_PRODUCTS,
    WRITER_SETTING,
    Bind,
    ChangedProduct,
    Drift,
    changed_products,
    clear_canonical,
    declare_writer,
    drift,
    drift_generation,
    forget_changes,
    has_safety_net,
    install_triggers,
    install_truncate_trigger,
    is_ready,
    is_verified,
    mark_canonical,
    mark_contracted,
    mark_new_tenant_verified,
    mark_verified,
    record_drift,
    record_failed_verification,
    remove_triggers,
    unverified_tenants,
    verified_at,
)

__all__ = [
    "BACKFILL_TABLES",
    "CHANGED_PRODUCTS",
    "WRITER_SETTING",
    "Bind",
    "ChangedProduct",
    "Drift",
    "backups",
    "changed_products",
    "claims",
    "clear_canonical",
    "declare_writer",
    "deferred",
    "drift",
    "drift_generation",
    "forget_changes",
    "has_safety_net",
    "install_triggers",
    "install_truncate_trigger",
    "is_ready",
    "is_verified",
    "mark_canonical",
    "mark_contracted",
    "mark_new_tenant_verified",
    "mark_verified",
    "record_drift",
    "record_failed_verification",
    "remove_triggers",
    "runs",
    "unverified_tenants",
    "verified_at",
]
