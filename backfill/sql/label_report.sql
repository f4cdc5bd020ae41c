-- What the label rule flags (from the JSONB, before) and what the table holds (after), for
-- one tenant schema (unqualified tables: the caller's search_path names it).
--   :legacy_sources text[]
-- "The rule" is what app.images.normalise_legacy gives a legacy product, i.e. what the
-- backfill will write: any boolean `is_label` among its accepted elements switches the rule
-- off (the label is then the element with is_label true, if any, and nobody reviews);
-- otherwise two or more images label the last, exactly one needs a human. An accepted
-- element is an object with a non-blank string url. tests/backfill/test_label_report.py
-- proves these counts equal the Python rule's on generated dirty data.
WITH product AS (
  SELECT p.id,
         p.source = ANY(CAST(:legacy_sources AS text[])) AS is_legacy,
         coalesce(a.images, 0) AS images,
         coalesce(a.has_explicit, false) AS has_explicit,
         coalesce(a.has_explicit_label, false) AS has_explicit_label,
         EXISTS (SELECT 1 FROM product_images AS i WHERE i.product_id = p.id) AS is_migrated,
         EXISTS (SELECT 1 FROM product_images AS i WHERE i.product_id = p.id AND i.is_label)
           AS has_label
  FROM products AS p
  -- jsonb_array_elements of a non-array would raise: the CASE gives it no elements.
  LEFT JOIN LATERAL (
    SELECT count(*) AS images,
           bool_or(jsonb_typeof(e -> 'is_label') = 'boolean') AS has_explicit,
           bool_or(e -> 'is_label' = 'true'::jsonb) AS has_explicit_label
    FROM jsonb_array_elements(CASE WHEN jsonb_typeof(p.images) = 'array' THEN p.images
                                   ELSE '[]'::jsonb END) AS e
    WHERE jsonb_typeof(e) = 'object' AND jsonb_typeof(e -> 'url') = 'string'
      AND NOT public.pim_is_blank(e ->> 'url')
  ) AS a ON true
),
ruled AS (
  SELECT *,
         CASE WHEN has_explicit THEN has_explicit_label ELSE images >= 2 END AS has_rule_label,
         NOT has_explicit AND images = 1 AS needs_review
  FROM product
)
SELECT
  count(*) FILTER (WHERE is_legacy) AS legacy_products,
  count(*) FILTER (WHERE is_legacy AND has_rule_label) AS rule_labels,
  count(*) FILTER (WHERE is_legacy AND needs_review) AS review_single_image,
  count(*) FILTER (WHERE is_legacy AND images = 0) AS legacy_without_images,
  count(*) FILTER (WHERE is_migrated) AS migrated_products,
  count(*) FILTER (WHERE has_label) AS table_labels,
  count(*) FILTER (WHERE has_label AND NOT is_legacy) AS labels_outside_rule,
  count(*) FILTER (WHERE is_legacy AND is_migrated AND has_rule_label AND NOT has_label)
    AS legacy_unlabelled_in_table
FROM ruled
