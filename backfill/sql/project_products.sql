-- The set-based projection: the normalised images of the listed products of the current
-- tenant schema, as product_images rows (tables are unqualified on purpose: the caller's
-- search_path names the schema). Mirrors app.images.normalise_legacy rule by rule;
-- tests/backfill/test_projection_differential.py proves it on generated dirty data.
-- One text, two uses (backfill/projection.py): the runner and repair INSERT its rows for the
-- products that have no rows yet; verify compares them with the table, for every listed
-- product (it drops the line marked "runner only").
--   :product_ids     bigint[]  the products (the runner has locked them FOR UPDATE)
--   :legacy_sources  text[]    sources the label rule applies to
-- Needs the public.pim_* functions (functions.sql) and extra_float_digits >= 1 (see
-- pim_legacy_order).
--
-- Cost (docs/benchmarks.md, "Backfill throughput"): every rule that needs the normalised
-- order reads it from ONE sort, by (product, order key); the two per-value numberings
-- (a url's occurrence, a carried id's first holder) then sort each product's few rows again
-- (incremental sorts), and each JSON field and timestamp is read once.
WITH todo AS (
  -- A product whose column is not an array has nothing to project (record_rejections.sql
  -- reports it). The runner skips one that has rows: the dual-write or an earlier run wrote
  -- them.
  SELECT p.id, p.images, p.source, p.created_at
  FROM products AS p
  WHERE p.id = ANY(CAST(:product_ids AS bigint[]))
    AND jsonb_typeof(p.images) = 'array'
    AND NOT EXISTS (SELECT 1 FROM product_images AS i WHERE i.product_id = p.id) -- runner only
),
elements AS (
  -- _screen: the elements that can be images are objects with a non-blank string url.
  -- Each field is looked up once here; OFFSET 0 keeps the planner from folding this level
  -- into the next, which would copy the lookups into every use (an inlined function such
  -- as pim_legacy_order names its argument several times).
  SELECT t.id AS product_id,
         t.source,
         t.created_at AS product_created_at,
         el.ord - 1 AS position,
         el.e ->> 'url' AS url,
         el.e -> 'order' AS order_value,
         el.e -> 'is_label' AS is_label_value,
         el.e -> 'id' AS id_value,
         el.e -> 'alt_text' AS alt_text_value,
         el.e -> 'tags' AS tags_value,
         el.e -> 'mime_type' AS mime_type_value,
         el.e -> 'file_size' AS file_size_value,
         el.e -> 'width' AS width_value,
         el.e -> 'height' AS height_value,
         el.e -> 'created_at' AS created_at_value,
         el.e -> 'updated_at' AS updated_at_value
  FROM todo AS t
  CROSS JOIN LATERAL jsonb_array_elements(t.images) WITH ORDINALITY AS el(e, ord)
  WHERE jsonb_typeof(el.e) = 'object'
    AND jsonb_typeof(el.e -> 'url') = 'string'
    AND NOT public.pim_is_blank(el.e ->> 'url')
  OFFSET 0
),
fields AS (
  -- Every value that needs no other element, computed once per element (OFFSET 0: before
  -- the sorts, which then carry these columns instead of the JSON).
  SELECT l.product_id,
         l.source,
         l.position,
         l.url,
         public.pim_legacy_order(l.order_value) AS sort_order,
         l.is_label_value,
         -- _carried_id: a string in the 8-4-4-4-12 hex form (any case) is a carried id
         CASE WHEN jsonb_typeof(l.id_value) = 'string'
                   AND (l.id_value #>> '{}') ~ ('^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}'
                                                '-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')
              THEN (l.id_value #>> '{}')::uuid END AS carried_id,
         CASE WHEN jsonb_typeof(l.alt_text_value) = 'string' THEN l.alt_text_value #>> '{}' END
           AS alt_text,
         -- _tags: the string members of a list, in order, each cut to 200 characters
         -- (MAX_HISTORY_TAG_LENGTH: a GIN entry must fit in 8 KB); else no tags
         CASE WHEN jsonb_typeof(l.tags_value) = 'array' THEN
           ARRAY(SELECT left(tag #>> '{}', 200)
                 FROM jsonb_array_elements(l.tags_value) WITH ORDINALITY AS t(tag, k)
                 WHERE jsonb_typeof(tag) = 'string'
                 ORDER BY k)
           ELSE '{}'::text[] END AS tags,
         CASE WHEN jsonb_typeof(l.mime_type_value) = 'string' THEN l.mime_type_value #>> '{}' END
           AS mime_type,
         -- the bounds are the columns' types, as in _to_image
         public.pim_json_int(l.file_size_value, 0, 9223372036854775807) AS file_size,
         public.pim_json_int(l.width_value, 1, 2147483647)::int AS width,
         public.pim_json_int(l.height_value, 1, 2147483647)::int AS height,
         -- created_at falls back to the product's; updated_at (below) to the image's
         -- created_at. Each parsed once (a missing key is no call: the function is STRICT).
         coalesce(public.pim_legacy_timestamp(l.created_at_value), l.product_created_at)
           AS created_at,
         public.pim_legacy_timestamp(l.updated_at_value) AS updated_at
  FROM elements AS l
  OFFSET 0
),
ordered AS (
  -- _sort_key: (no usable order last, order, array position); renumbered 0..n-1. Every
  -- window here shares the one sort by (product, key).
  SELECT f.*,
         row_number() OVER by_key - 1 AS new_order,
         count(*) OVER by_product AS n,
         -- normalise_legacy: any boolean is_label (true or false) switches the label rule off
         bool_or(jsonb_typeof(f.is_label_value) = 'boolean') OVER by_product
           AS has_explicit_labels,
         -- _keep_last_label: the last image (in normalised order) with is_label true is the
         -- one whose running count of true labels reaches the product's total
         count(*) FILTER (WHERE f.is_label_value = 'true'::jsonb) OVER by_key AS labels_so_far,
         count(*) FILTER (WHERE f.is_label_value = 'true'::jsonb) OVER by_product AS labels,
         -- the ids the product's images carry (NULL when none does, the legacy case)
         array_agg(f.carried_id) FILTER (WHERE f.carried_id IS NOT NULL) OVER by_product
           AS carried_ids
  FROM fields AS f
  WINDOW by_product AS (PARTITION BY f.product_id),
         by_key AS (by_product ORDER BY f.sort_order IS NULL, f.sort_order, f.position)
),
numbered AS (
  SELECT o.*,
         -- the occurrence of identity.py: index of this exact url among the product's
         -- images carrying it, in normalised order. COLLATE "C" only makes the sort cheaper:
         -- equality under the database's (deterministic) collation is bytewise too.
         row_number() OVER (PARTITION BY o.product_id, o.url COLLATE "C"
                            ORDER BY o.new_order) - 1 AS occurrence,
         -- _assign_ids: the first image (in normalised order) carrying an id keeps it
         o.carried_id IS NOT NULL
           AND row_number() OVER (PARTITION BY o.product_id, o.carried_id
                                  ORDER BY o.new_order) = 1 AS keeps_carried
  FROM ordered AS o
)
SELECT -- Every other image gets its derived id, unless another image keeps that id as its
       -- carried one: then free_image_id's next attempt. pim_free_image_id returns the
       -- derived id when it is free, so it is only called when the product carries ids.
       CASE WHEN i.keeps_carried THEN i.carried_id
            WHEN i.carried_ids IS NULL THEN public.pim_image_id(i.product_id, i.occurrence, i.url)
            ELSE public.pim_free_image_id(i.product_id, i.occurrence, i.url, i.carried_ids)
       END AS id,
       i.product_id,
       i.url,
       i.new_order::int AS "order",
       CASE WHEN i.has_explicit_labels
              -- is_label is true, and only the last such one
              THEN coalesce(i.is_label_value = 'true'::jsonb, false) AND i.labels_so_far = i.labels
            -- label_rule: a legacy source with two images or more labels the last one
            -- (one image: no label, a human decides); coalesce: a NULL in the sources
            ELSE coalesce(i.source = ANY(CAST(:legacy_sources AS text[])), false)
                 AND i.n >= 2 AND i.new_order = i.n - 1
       END AS is_label,
       i.alt_text,
       i.tags,
       i.mime_type,
       i.file_size,
       i.width,
       i.height,
       i.created_at,
       coalesce(i.updated_at, i.created_at) AS updated_at
FROM numbered AS i
