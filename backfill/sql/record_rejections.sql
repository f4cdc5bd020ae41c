-- Every part of the given products' JSONB that cannot be an image, with its reason, into the
-- rejection report (idempotent). Reasons and details as app.images.normalise gives them.
--   :product_ids bigint[]   :found_by text
WITH rejected AS (
  SELECT p.id AS product_id, -1 AS position,
         CASE WHEN p.images = 'null'::jsonb THEN NULL ELSE p.images END AS raw,
         CASE WHEN p.images = 'null'::jsonb THEN 'column_null' ELSE 'column_not_an_array' END
           AS reason,
         CASE WHEN p.images = 'null'::jsonb THEN 'the images column is null'
              ELSE 'the images column holds a ' || jsonb_typeof(p.images)
                   || ', not an array of image objects' END AS detail
  FROM products AS p
  WHERE p.id = ANY(CAST(:product_ids AS bigint[])) AND jsonb_typeof(p.images) <> 'array'
  UNION ALL
  SELECT p.id, (el.ord - 1)::int, el.e,
         CASE WHEN jsonb_typeof(el.e) <> 'object' THEN 'not_an_object'
              WHEN coalesce(jsonb_typeof(el.e -> 'url'), 'null') = 'null' THEN 'missing_url'
              WHEN jsonb_typeof(el.e -> 'url') <> 'string' THEN 'url_not_a_string'
              ELSE 'empty_url' END,
         'element ' || (el.ord - 1) || CASE
              WHEN jsonb_typeof(el.e) <> 'object'
                THEN ' is a ' || jsonb_typeof(el.e) || ', not an object with a url'
              WHEN coalesce(jsonb_typeof(el.e -> 'url'), 'null') = 'null' THEN ' has no url'
              WHEN jsonb_typeof(el.e -> 'url') <> 'string'
                THEN ' has a url that is a ' || jsonb_typeof(el.e -> 'url') || ', not a string'
              ELSE ' has a blank url' END
  FROM products AS p
  CROSS JOIN LATERAL jsonb_array_elements(p.images) WITH ORDINALITY AS el(e, ord)
  WHERE p.id = ANY(CAST(:product_ids AS bigint[])) AND jsonb_typeof(p.images) = 'array'
    -- IS NOT TRUE, not NOT: a missing url makes the test NULL, and NULL must count as rejected
    AND (jsonb_typeof(el.e) = 'object'
         AND jsonb_typeof(el.e -> 'url') = 'string'
         AND NOT public.pim_is_blank(el.e ->> 'url')) IS NOT TRUE
),
inserted AS (
  INSERT INTO rejected_image_elements (product_id, position, raw, reason, detail, found_by)
  SELECT product_id, position, raw, reason, detail, CAST(:found_by AS text) FROM rejected
  -- any conflict: the same element at the same position is already in the report
  ON CONFLICT DO NOTHING
  RETURNING 1
)
SELECT count(*) FROM inserted
