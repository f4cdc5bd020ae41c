-- What the label rule flags (from the JSONB, before) and what the table holds (after), for
-- one tenant schema (unqualified tables: the caller's search_path names it).
--   :legacy_sources text[]
WITH product AS (
  SELECT p.id,
         p.source = ANY(CAST(:legacy_sources AS text[])) AS is_legacy,
         CASE WHEN jsonb_typeof(p.images) = 'array' THEN (
           SELECT count(*) FROM jsonb_array_elements(p.images) AS e
           WHERE jsonb_typeof(e) = 'object' AND jsonb_typeof(e -> 'url') = 'string'
             AND NOT public.pim_is_blank(e ->> 'url'))
         ELSE 0 END AS images,
         EXISTS (SELECT 1 FROM product_images AS i WHERE i.product_id = p.id) AS is_migrated,
         EXISTS (SELECT 1 FROM product_images AS i WHERE i.product_id = p.id AND i.is_label)
           AS has_label
  FROM products AS p
)
SELECT
  count(*) FILTER (WHERE is_legacy) AS legacy_products,
  count(*) FILTER (WHERE is_legacy AND images >= 2) AS rule_labels,
  count(*) FILTER (WHERE is_legacy AND images = 1) AS review_single_image,
  count(*) FILTER (WHERE is_legacy AND images = 0) AS legacy_without_images,
  count(*) FILTER (WHERE is_migrated) AS migrated_products,
  count(*) FILTER (WHERE has_label) AS table_labels,
  count(*) FILTER (WHERE has_label AND NOT is_legacy) AS labels_outside_rule,
  count(*) FILTER (WHERE is_legacy AND is_migrated AND images >= 2 AND NOT has_label)
    AS legacy_unlabelled_in_table
FROM product
