-- The set-based projection: for the given products of the current tenant schema (tables are
-- unqualified on purpose: the caller's search_path names the schema, and backfill/verify.py
-- points them at temporary copies), insert the normalised images of every listed product
-- that has no rows yet. Mirrors app.images.normalise_legacy rule by rule;
-- tests/backfill/test_projection_differential.py proves it on generated dirty data.
--   :product_ids     bigint[]  the batch (already locked FOR UPDATE by the caller)
--   :legacy_sources  text[]    sources the label rule applies to
-- Returns one row: the number of rows inserted. Needs the public.pim_* functions
-- (functions.sql) and extra_float_digits >= 1 (see pim_legacy_order).
WITH todo AS (
  -- A product whose column is not an array has nothing to project (record_rejections.sql
  -- reports it); one that already has rows was written by the dual-write or an earlier run.
  SELECT p.id, p.images, p.source, p.created_at
  FROM products AS p
  WHERE p.id = ANY(CAST(:product_ids AS bigint[]))
    AND jsonb_typeof(p.images) = 'array'
    AND NOT EXISTS (SELECT 1 FROM product_images AS i WHERE i.product_id = p.id)
),
accepted AS (
  -- _screen: the elements that can be images are objects with a non-blank string url.
  SELECT t.id AS product_id,
         t.source,
         t.created_at AS product_created_at,
         el.e,
         el.ord - 1 AS position,
         el.e ->> 'url' AS url,
         public.pim_legacy_order(el.e -> 'order') AS sort_order
  FROM todo AS t
  CROSS JOIN LATERAL jsonb_array_elements(t.images) WITH ORDINALITY AS el(e, ord)
  WHERE jsonb_typeof(el.e) = 'object'
    AND jsonb_typeof(el.e -> 'url') = 'string'
    AND NOT public.pim_is_blank(el.e ->> 'url')
),
ordered AS (
  -- _sort_key: (no usable order last, order, array position); renumbered 0..n-1.
  SELECT a.*,
         row_number() OVER by_key - 1 AS new_order,
         count(*) OVER (PARTITION BY a.product_id) AS n,
         -- the occurrence of identity.py: index of this exact url among the product's
         -- images carrying it, in normalised order (text equality is bytewise: the
         -- database collation is deterministic)
         row_number() OVER (PARTITION BY a.product_id, a.url
                            ORDER BY a.sort_order IS NULL, a.sort_order, a.position) - 1
           AS occurrence,
         -- normalise_legacy: any boolean is_label (true or false) switches the label rule off
         bool_or(jsonb_typeof(a.e -> 'is_label') = 'boolean')
           OVER (PARTITION BY a.product_id) AS has_explicit_labels
  FROM accepted AS a
  WINDOW by_key AS (PARTITION BY a.product_id
                    ORDER BY a.sort_order IS NULL, a.sort_order, a.position)
),
derived AS (
  SELECT o.*,
         public.pim_image_id(o.product_id, o.occurrence, o.url) AS derived_id,
         -- _carried_id: a string in the 8-4-4-4-12 hex form (any case) is a carried id
         CASE WHEN jsonb_typeof(o.e -> 'id') = 'string'
                   AND (o.e ->> 'id') ~ ('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}'
                                         '-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')
              THEN (o.e ->> 'id')::uuid END AS carried_id,
         -- _keep_last_label: the last image in normalised order with is_label true
         max(o.new_order) FILTER (WHERE o.e -> 'is_label' = 'true'::jsonb)
           OVER (PARTITION BY o.product_id) AS last_explicit_label
  FROM ordered AS o
),
kept AS (
  -- _assign_ids: the first image (in normalised order) carrying an id keeps it, whatever
  -- another image derives; ids are unique within a product from here on.
  SELECT d.*,
         d.carried_id IS NOT NULL
           AND row_number() OVER (PARTITION BY d.product_id, d.carried_id
                                  ORDER BY d.new_order) = 1 AS keeps_carried
  FROM derived AS d
),
identified AS (
  -- Every other image gets its derived id, unless another image keeps that id as its
  -- carried one: then free_image_id's next attempt (the rare case; the taken ids are
  -- gathered only then). The owner is found by a hash join, not a correlated subquery
  -- (quadratic over a batch); kept carried ids are distinct, so the join adds no rows.
  SELECT k.*,
         CASE WHEN k.keeps_carried THEN k.carried_id
              WHEN owner.product_id IS NULL THEN k.derived_id
              ELSE public.pim_free_image_id(
                     k.product_id, k.occurrence, k.url,
                     ARRAY(SELECT t.carried_id FROM kept AS t
                           WHERE t.product_id = k.product_id AND t.keeps_carried))
         END AS image_id
  FROM kept AS k
  LEFT JOIN kept AS owner
    ON owner.product_id = k.product_id AND owner.carried_id = k.derived_id
       AND owner.keeps_carried
),
projected AS (
  SELECT i.image_id AS id,
         i.product_id,
         i.url,
         i.new_order AS "order",
         CASE WHEN i.has_explicit_labels
                -- is_label is true, and only the last such one; coalesce: when every
                -- boolean is_label is false, last_explicit_label is NULL
                THEN coalesce(i.new_order = i.last_explicit_label, false)
              -- label_rule: a legacy source with two images or more labels the last one
              -- (one image: no label, a human decides); coalesce: a NULL in the sources
              ELSE coalesce(i.source = ANY(CAST(:legacy_sources AS text[])), false)
                   AND i.n >= 2 AND i.new_order = i.n - 1
         END AS is_label,
         CASE WHEN jsonb_typeof(i.e -> 'alt_text') = 'string' THEN i.e ->> 'alt_text' END
           AS alt_text,
         -- _tags: the string members of a list, in order, each cut to 200 characters
         -- (MAX_HISTORY_TAG_LENGTH: a GIN entry must fit in 8 KB); else no tags
         CASE WHEN jsonb_typeof(i.e -> 'tags') = 'array' THEN
           ARRAY(SELECT left(tag #>> '{}', 200)
                 FROM jsonb_array_elements(i.e -> 'tags') WITH ORDINALITY AS t(tag, k)
                 WHERE jsonb_typeof(tag) = 'string'
                 ORDER BY k)
           ELSE '{}'::text[] END AS tags,
         CASE WHEN jsonb_typeof(i.e -> 'mime_type') = 'string' THEN i.e ->> 'mime_type' END
           AS mime_type,
         -- the bounds are the columns' types, as in _to_image
         public.pim_json_int(i.e -> 'file_size', 0, 9223372036854775807) AS file_size,
         public.pim_json_int(i.e -> 'width', 1, 2147483647)::int AS width,
         public.pim_json_int(i.e -> 'height', 1, 2147483647)::int AS height,
         -- created_at falls back to the product's; updated_at to the image's created_at
         coalesce(stamp.created, i.product_created_at) AS created_at,
         coalesce(stamp.updated, stamp.created, i.product_created_at) AS updated_at
  FROM identified AS i
  -- Each timestamp parsed once (created_at is also updated_at's fallback).
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
