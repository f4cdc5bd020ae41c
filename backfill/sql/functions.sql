-- Helper functions of the set-based projection, in `public` with a `pim_` prefix. No
-- extension is needed (the embedded PostgreSQL has no uuid-ossp and no pgcrypto).
-- Each mirrors one rule of app/images/ (normalise.py, identity.py); the differential test
-- in tests/backfill/ proves they agree.

-- app.images.identity.legacy_image_id: uuid3(namespace, "<product_id>|<occurrence>|<url>").
-- md5() is built in; then the version nibble becomes 3 and the variant bits 10.
CREATE OR REPLACE FUNCTION public.pim_image_id(product_id bigint, occurrence bigint, url text)
RETURNS uuid LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT (substr(h, 1, 12) || '3' || substr(h, 14, 3)
          || to_hex(8 | (('x' || lpad(substr(h, 17, 1), 8, '0'))::bit(32)::int & 3))
          || substr(h, 18))::uuid
  FROM (SELECT md5(decode('00751c3029d45b71ac551112b96d4b14', 'hex')
                   || convert_to(product_id::text || '|' || occurrence::text || '|' || url,
                                 'UTF8')) AS h) AS digest
$$;

-- app.images.normalise.parse_legacy_timestamp: an ISO 8601 text, naive = UTC, else NULL.
-- Parsed by hand (offset applied as an interval) so that PostgreSQL accepts exactly what
-- Python's datetime.fromisoformat accepts: no hour 24, no second 60, offsets below 24 h,
-- results within years 1..9999 in UTC.
CREATE OR REPLACE FUNCTION public.pim_legacy_timestamp(value jsonb)
RETURNS timestamptz LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  t text;
  parts text[];
  local_part timestamp;
  offset_minutes int := 0;
  result timestamptz;
BEGIN
  IF value IS NULL OR jsonb_typeof(value) <> 'string' THEN
    RETURN NULL;
  END IF;
  t := value #>> '{}';
  parts := regexp_match(t,
    '^([0-9]{4}-[0-9]{2}-[0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,6})?'
    '(Z|([+-])([0-9]{2})(:?([0-9]{2}))?)?$');
  IF parts IS NULL OR parts[2]::int > 23 OR parts[3]::int > 59 OR parts[4]::int > 59 THEN
    RETURN NULL;
  END IF;
  local_part := (parts[1] || ' ' || parts[2] || ':' || parts[3] || ':' || parts[4]
                 || coalesce(parts[5], ''))::timestamp;
  IF parts[7] IS NOT NULL THEN
    IF parts[8]::int > 23 OR coalesce(parts[10], '0')::int > 59 THEN
      RETURN NULL;
    END IF;
    offset_minutes := (parts[8]::int * 60 + coalesce(parts[10], '0')::int)
                      * CASE parts[7] WHEN '-' THEN -1 ELSE 1 END;
  END IF;
  result := (local_part - make_interval(mins => offset_minutes)) AT TIME ZONE 'UTC';
  IF result < '0001-01-01 00:00:00+00' OR result >= '10000-01-01 00:00:00+00' THEN
    RETURN NULL;
  END IF;
  RETURN result;
EXCEPTION WHEN others THEN
  RETURN NULL;  -- a date that matches the pattern but does not exist (2024-02-30)
END
$$;

-- app.images.normalise.usable_order: a JSON number, or a string of a plain decimal number.
CREATE OR REPLACE FUNCTION public.pim_legacy_order(value jsonb)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN jsonb_typeof(value) = 'number' THEN (value #>> '{}')::numeric
    WHEN jsonb_typeof(value) = 'string'
         AND (value #>> '{}') ~ '^[ \t\n\r\f\v]*-?[0-9]+(\.[0-9]+)?[ \t\n\r\f\v]*$'
      THEN btrim(value #>> '{}', E' \t\n\r\f\v')::numeric
  END
$$;

-- An integer JSON number within [low, high] (JSON 3.0 is a float to Python: not accepted).
CREATE OR REPLACE FUNCTION public.pim_json_int(value jsonb, low numeric, high numeric)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN jsonb_typeof(value) = 'number' AND (value #>> '{}') ~ '^-?[0-9]+$'
         AND (value #>> '{}')::numeric BETWEEN low AND high
      THEN (value #>> '{}')::bigint
  END
$$;

-- Python's str.strip() whitespace (str.isspace), for "blank url".
CREATE OR REPLACE FUNCTION public.pim_is_blank(value text)
RETURNS boolean LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT btrim(value, E'\t\n\u000b\f\r\u001c\u001d\u001e\u001f \u0085\u00a0\u1680'
                      || E'\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a'
                      || E'\u2028\u2029\u202f\u205f\u3000') = ''
$$;
