-- Helper functions of the set-based projection, in `public` with a `pim_` prefix. No
-- extension is needed (the embedded PostgreSQL has no uuid-ossp and no pgcrypto).
-- Each mirrors one rule of app/images/ (normalise.py, identity.py); the differential test
-- in tests/backfill/ proves they agree.

-- app.images.identity.legacy_image_id: uuid3(namespace, "<product_id>|<occurrence>|<url>").
-- md5() is built in; then the version nibble becomes 3 and the variant bits 10.
CREATE OR REPLACE FUNCTION public.pim_image_id(product_id bigint, occurrence bigint, url text)
RETURNS uuid LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  h text := md5(decode('00751c3029d45b71ac551112b96d4b14', 'hex')
                || convert_to(product_id::text || '|' || occurrence::text || '|' || url, 'UTF8'));
BEGIN
  RETURN (substr(h, 1, 12) || '3' || substr(h, 14, 3)
          || to_hex(8 | (('x' || lpad(substr(h, 17, 1), 8, '0'))::bit(32)::int & 3))
          || substr(h, 18))::uuid;
END
$$;

-- app.images.normalise.parse_legacy_timestamp. Parsed by hand (the offset applied as an
-- interval) so that PostgreSQL accepts exactly what Python's datetime.fromisoformat accepts:
-- no hour 24, no second 60, no 2024-02-30, offsets below 24 h, results within years
-- 1..9999 in UTC. Every field is checked before a cast that could fail, so no EXCEPTION
-- block (in plpgsql, a subtransaction per call), and the shape is checked with a boolean
-- `~` and cut by position: regexp_match with capture groups cost about 36 us per value
-- here, `~` under 1 us (docs/benchmarks.md).
CREATE OR REPLACE FUNCTION public.pim_legacy_timestamp(value jsonb)
RETURNS timestamptz LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  t text;
  rest text;
  zone text;
  fraction text := '';
  offset_minutes int := 0;
  utc timestamp;
BEGIN
  IF jsonb_typeof(value) IS DISTINCT FROM 'string' THEN
    RETURN NULL;
  END IF;
  t := value #>> '{}';
  IF t !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$'
     OR substr(t, 12, 2)::int > 23 OR substr(t, 15, 2)::int > 59 OR substr(t, 18, 2)::int > 59
     OR substr(t, 1, 4)::int < 1 OR substr(t, 6, 2)::int NOT BETWEEN 1 AND 12
     OR substr(t, 9, 2)::int < 1 THEN
    RETURN NULL;
  END IF;
  IF substr(t, 9, 2)::int > extract(day FROM make_date(substr(t, 1, 4)::int,
                                                       substr(t, 6, 2)::int, 1)
                                             + interval '1 month - 1 day') THEN
    RETURN NULL;  -- a date that matches the pattern but does not exist (2024-02-30)
  END IF;
  rest := substr(t, 20);  -- after the seconds: an optional ".ffffff", then the zone
  zone := rest;
  IF left(rest, 1) = '.' THEN
    zone := ltrim(substr(rest, 2), '0123456789');
    fraction := left(rest, length(rest) - length(zone));
  END IF;
  IF zone NOT IN ('', 'Z') THEN
    IF substr(zone, 2, 2)::int > 23 OR (length(zone) > 3 AND right(zone, 2)::int > 59) THEN
      RETURN NULL;
    END IF;
    offset_minutes := (substr(zone, 2, 2)::int * 60
                       + CASE WHEN length(zone) > 3 THEN right(zone, 2)::int ELSE 0 END)
                      * CASE left(zone, 1) WHEN '-' THEN -1 ELSE 1 END;
  END IF;
  utc := (substr(t, 1, 10) || ' ' || substr(t, 12, 8) || fraction)::timestamp
         - make_interval(mins => offset_minutes);
  IF utc < '0001-01-01 00:00:00' OR utc >= '10000-01-01 00:00:00' THEN
    RETURN NULL;
  END IF;
  RETURN utc AT TIME ZONE 'UTC';
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
