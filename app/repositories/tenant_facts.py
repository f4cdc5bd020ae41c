"""What a tenant's schema says about its migration (expanded? backfilled? verified?
contracted?), read inside the caller's transaction: the facts `flags.stages.resolve` turns,
with the flags, into the tenant's stage."""

from __future__ import annotations

from sqlalchemy import text

from app.core.database import TenantSession
from flags.stages import TenantFacts


def tenant_facts(session: TenantSession) -> TenantFacts:
    """Expanded? backfilled? verified? contracted? Read inside the caller's transaction."""
    schema = session.quoted_schema
    present = session.execute(
        text(
            "SELECT to_regclass(:images) IS NOT NULL, to_regclass(:state) IS NOT NULL, "
            "to_regclass(:runs) IS NOT NULL, NOT EXISTS (SELECT 1 FROM pg_attribute "
            "WHERE attrelid = to_regclass(:products) AND attname = 'images' "
            "AND NOT attisdropped), "
            # Reading products (no row) takes its ACCESS SHARE lock until the request ends:
            # the contract's DROP COLUMN waits for this request, so what this query says
            # about the column stays true for the whole request.
            f"(SELECT count(*) FROM (SELECT FROM {schema}.products LIMIT 0) AS held)"
        ),
        {
            "images": f"{schema}.product_images",
            "state": f"{schema}.image_migration_state",
            "runs": f"{schema}.backfill_runs",
            "products": f"{schema}.products",
        },
    ).one()
    has_table, has_state, has_runs, is_contracted = (bool(value) for value in present[:4])
    is_verified = has_state and bool(
        session.execute(
            text(f"SELECT verified_at IS NOT NULL FROM {schema}.image_migration_state")
        ).scalar()
    )
    is_backfilled = has_runs and bool(
        session.execute(
            text(f"SELECT EXISTS (SELECT 1 FROM {schema}.backfill_runs WHERE status = 'done')")
        ).scalar()
    )
    return TenantFacts(
        has_table=has_table,
        # The schema itself says: products.images is gone (read per request, in the request's
        # transaction, so a contract or its downgrade is seen by the next request).
        is_contracted=is_contracted and has_table,
        is_backfilled=is_backfilled,
        is_verified=is_verified,
    )
