-- The label report of a contracted tenant: the JSONB the rule reads is gone, so only what
-- the table holds (after), for one tenant schema (unqualified tables: the caller's
-- search_path names it).
--   :legacy_sources text[]
WITH product AS (
  SELECT p.id,
         p.source = ANY(CAST(:legacy_sources AS text[])) AS is_legacy,
         EXISTS (SELECT 1 FROM product_images AS i WHERE i.product_id = p.id) AS is_migrated,
         EXISTS (SELECT 1 FROM product_images AS i WHERE i.product_id = p.id AND i.is_label)
           AS has_label
  FROM products AS p
)
SELECT
  count(*) FILTER (WHERE is_legacy) AS legacy_products,
  count(*) FILTER (WHERE is_migrated) AS migrated_products,
  count(*) FILTER (WHERE has_label) AS table_labels,
  count(*) FILTER (WHERE has_label AND NOT is_legacy) AS labels_outside_rule
FROM product
