-- The database-level safety net (migration 0010): a write to `products.images` that does not
-- come through the dual-write (an old app version during a rolling deploy, the legacy
-- importer, a hand-written UPDATE, the dual-write kill switch, a backup restore) leaves the
-- table stale for that product. The triggers on every tenant's `products` call this function
-- for such a write: it records drift (the tenant loses its verified state, so read-table's
-- interlock sends reads back to the JSONB, and the drift generation moves on, which is what
-- verify's compare-and-set checks) and logs the product in `changed_products`, which
-- `backfill repair` and `verify --since` consume. No image work here: one UPDATE of the
-- one-row state table (taken first: drifting writers queue there, so generations are
-- committed in order) and one upsert.
--
-- Writers that keep both representations equal say so for their transaction with
-- `set_config('pim.images_writer', '<name>', true)`: the triggers' WHEN clause then skips the
-- call altogether (measured in docs/benchmarks.md).
CREATE OR REPLACE FUNCTION public.pim_images_written_outside() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  generation bigint;
BEGIN
  EXECUTE format(
    'UPDATE %I.image_migration_state SET verified_at = NULL, drift_found_at = now(), '
    'drift_generation = drift_generation + 1, updated_at = now(), '
    'verification = coalesce(verification, ''{}''::jsonb) || jsonb_build_object(''drift'', $1) '
    'WHERE id = 1 RETURNING drift_generation', TG_TABLE_SCHEMA)
  INTO generation
  USING format('products.images written outside the dual-write (%s of product %s)',
               lower(TG_OP), NEW.id);
  EXECUTE format(
    'INSERT INTO %I.changed_products (product_id, generation, writer) VALUES ($1, $2, $3) '
    'ON CONFLICT (product_id) DO UPDATE SET generation = EXCLUDED.generation, '
    'changed_at = now(), writer = EXCLUDED.writer', TG_TABLE_SCHEMA)
  USING NEW.id, coalesce(generation, 0),
        coalesce(nullif(current_setting('application_name', true), ''), session_user::text);
  RETURN NULL;
END
$$;

-- A TRUNCATE of a tenant's `product_images` (the backfill's documented way back) empties
-- the table under a tenant that may be verified: drift, so that read-table's interlock keeps
-- its reads on the JSONB until `backfill run` and `verify` again.
CREATE OR REPLACE FUNCTION public.pim_images_table_truncated() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format(
    'UPDATE %I.image_migration_state SET verified_at = NULL, drift_found_at = now(), '
    'drift_generation = drift_generation + 1, updated_at = now(), '
    'verification = coalesce(verification, ''{}''::jsonb) '
    '|| jsonb_build_object(''drift'', ''product_images truncated'') WHERE id = 1',
    TG_TABLE_SCHEMA);
  RETURN NULL;
END
$$;
