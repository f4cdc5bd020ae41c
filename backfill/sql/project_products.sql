-- The set-based projection: for the given products of the current tenant schema (tables are
-- unqualified on purpose: the caller's search_path names the schema), insert the normalised
-- images of every product that has no rows yet. Mirrors app.images.normalise_legacy rule by
-- rule; tests/backfill/test_projection_differential.py proves it.
--   :product_ids     bigint[]  the batch (already locked FOR UPDATE by the caller)
--   :legacy_sources  text[]    sources the label rule applies to
WITH todo AS (
  SELECT p.id, p.images, p.source, p.created_at
  FROM products AS p
  WHERE p.id = ANY(CAST(:product_ids AS bigint[]))
    AND jsonb_typeof(p.images) = 'array'
    AND NOT EXISTS (SELECT 1 FROM product_images AS i WHERE i.product_id = p.id)
),
accepted AS (
  -- Elements that can be images: objects with a non-blank string url.
  SELECT t.id AS product_id, t.source, t.created_at AS product_created_at,
         el.e, el.ord - 1 AS position, el.e ->> 'url' AS url,
         public.pim_legacy_order(el.e -> 'order') AS sort_order
  FROM todo AS t
  CROSS JOIN LATERAL jsonb_array_elements(t.images) WITH ORDINALITY AS el(e, ord)
  WHERE jsonb_typeof(el.e) = 'object'
    AND jsonb_typeof(el.e -> 'url') = 'string'
    AND NOT public.pim_is_blank(el.e ->> 'url')
),
ordered AS (
  -- Sort by (no usable order last, order, array position); renumber 0..n-1.
  SELECT a.*,
         row_number() OVER w - 1 AS new_order,
         count(*) OVER (PARTITION BY a.product_id) AS n,
         -- occurrence of this exact url among the product's images, in normalised order
         row_number() OVER (PARTITION BY a.product_id, a.url
                            ORDER BY a.sort_order IS NULL, a.sort_order, a.position) - 1
           AS occurrence,
         bool_or(jsonb_typeof(a.e -> 'is_label') = 'boolean')
           OVER (PARTITION BY a.product_id) AS has_explicit_labels
  FROM accepted AS a
  WINDOW w AS (PARTITION BY a.product_id ORDER BY a.sort_order IS NULL, a.sort_order, a.position)
),
derived AS (
  SELECT o.*,
         public.pim_image_id(o.product_id, o.occurrence, o.url) AS derived_id,
         CASE WHEN jsonb_typeof(o.e -> 'id') = 'string'
                   AND (o.e ->> 'id') ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
              THEN (o.e ->> 'id')::uuid END AS carried_id,
         max(o.new_order) FILTER (WHERE o.e -> 'is_label' = 'true'::jsonb)
           OVER (PARTITION BY o.product_id) AS last_explicit_label
  FROM ordered AS o
),
identified AS (
  -- A carried id is kept when no other image of the product derives it and no earlier image
  -- carries it too; otherwise the derived id (see app.images.normalise._assign_ids).
  SELECT d.*,
         CASE WHEN d.carried_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM derived AS other
                                   WHERE other.product_id = d.product_id
                                     AND other.new_order <> d.new_order
                                     AND other.derived_id = d.carried_id)
                   AND row_number() OVER (PARTITION BY d.product_id, d.carried_id
                                          ORDER BY d.new_order) = 1
              THEN d.carried_id ELSE d.derived_id END AS image_id
  FROM derived AS d
),
projected AS (
  SELECT i.image_id AS id,
         i.product_id,
         i.url,
         i.new_order AS "order",
         -- coalesce: when every explicit is_label is false, last_explicit_label is NULL
         CASE WHEN i.has_explicit_labels THEN coalesce(i.new_order = i.last_explicit_label, false)
              ELSE i.source = ANY(CAST(:legacy_sources AS text[])) AND i.n >= 2
                   AND i.new_order = i.n - 1
         END AS is_label,
         CASE WHEN jsonb_typeof(i.e -> 'alt_text') = 'string' THEN i.e ->> 'alt_text' END
           AS alt_text,
         CASE WHEN jsonb_typeof(i.e -> 'tags') = 'array' THEN
           ARRAY(SELECT tag #>> '{}'
                 FROM jsonb_array_elements(i.e -> 'tags') WITH ORDINALITY AS t(tag, k)
                 WHERE jsonb_typeof(tag) = 'string' ORDER BY k)
           ELSE '{}'::text[] END AS tags,
         CASE WHEN jsonb_typeof(i.e -> 'mime_type') = 'string' THEN i.e ->> 'mime_type' END
           AS mime_type,
         public.pim_json_int(i.e -> 'file_size', 0, 9223372036854775807) AS file_size,
         public.pim_json_int(i.e -> 'width', 1, 2147483647)::int AS width,
         public.pim_json_int(i.e -> 'height', 1, 2147483647)::int AS height,
         coalesce(stamp.created, i.product_created_at) AS created_at,
         coalesce(stamp.updated, stamp.created, i.product_created_at) AS updated_at
  FROM identified AS i
  -- each timestamp parsed once (created_at is also updated_at's fallback)
  CROSS JOIN LATERAL (
    SELECT public.pim_legacy_timestamp(i.e -> 'created_at') AS created,
           public.pim_legacy_timestamp(i.e -> 'updated_at') AS updated
  ) AS stamp
),
inserted AS (
  INSERT INTO product_images (id, product_id, url, "order", is_label, alt_text, tags,
                              mime_type, file_size, width, height, created_at, updated_at)
  SELECT id, product_id, url, "order", is_label, alt_text, tags, mime_type, file_size, width,
         height, created_at, updated_at
  FROM projected
  RETURNING 1
)
SELECT count(*) FROM inserted
