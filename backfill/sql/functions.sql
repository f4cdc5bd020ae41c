-- Helper functions of the set-based projection, in `public` with a `pim_` prefix. No
-- extension is needed (the embedded PostgreSQL has no uuid-ossp and no pgcrypto).
-- Each mirrors one rule of app/images/ (normalise.py, identity.py); the tests in
-- tests/backfill/test_projection_*.py prove they agree. Applied by migration 0006 and by
-- backfill.projection.apply_functions; every statement is CREATE OR REPLACE, so the file can
-- be re-applied at any time. Keep the signatures in step with 0006's FUNCTIONS (its downgrade).
--
-- All but pim_image_id are plain SQL `SELECT <expression>` bodies without FROM, so the
-- planner inlines them into the projection (no per-row function call).

-- app.images.identity.legacy_image_id: uuid3(namespace, "<product_id>|<occurrence>|<url>"),
-- i.e. md5(namespace bytes || UTF-8 name) with the version nibble set to 3 (byte 6) and the
-- RFC 4122 variant bits 10 (byte 8). The FROM keeps md5 to one evaluation per call (it
-- makes the function non-inlinable, which costs a few microseconds per image).
CREATE OR REPLACE FUNCTION public.pim_image_id(product_id bigint, occurrence bigint, url text)
RETURNS uuid LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT encode(set_byte(set_byte(digest, 6, (get_byte(digest, 6) & 15) | 48),
                         8, (get_byte(digest, 8) & 63) | 128),
                'hex')::uuid
  FROM (SELECT decode(md5(decode('00751c3029d45b71ac551112b96d4b14', 'hex')
                          || convert_to(product_id::text || '|' || occurrence::text || '|' || url,
                                        'UTF8')),
                      'hex') AS digest) AS hashed
$$;

-- app.images.normalise.parse_legacy_timestamp, in two inlinable steps: the pattern's parts
-- (one regexp per value), then the timestamp they make, or NULL. Parsed by hand (the offset
-- applied as an interval) so that PostgreSQL accepts exactly what CPython 3.11's
-- datetime.fromisoformat accepts, and never raises: every field is checked before any cast
-- that could fail, so no plpgsql EXCEPTION block (a subtransaction per call) is needed.
--   p[1..6]  year, month, day, hour, minute, second     p[7]   '.fraction' or NULL
--   p[8]     'Z', the whole offset, or NULL             p[9]   offset sign or NULL
--   p[10]    offset hours                               p[12]  offset minutes or NULL
CREATE OR REPLACE FUNCTION public.pim_timestamp_parts(value jsonb)
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(value) = 'string' THEN regexp_match(value #>> '{}',
    '^([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,6})?'
    '(Z|([+-])([0-9]{2})(:?([0-9]{2}))?)?$') END
$$;

-- A UTC wall-clock time as timestamptz, if Python can represent it (years 1..9999): an
-- offset can push a valid local time out of range, and astimezone(UTC) then overflows.
CREATE OR REPLACE FUNCTION public.pim_utc_within_years(utc timestamp)
RETURNS timestamptz LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT CASE WHEN utc >= '0001-01-01 00:00:00' AND utc < '10000-01-01 00:00:00'
              THEN utc AT TIME ZONE 'UTC' END
$$;

-- The date and time fields are validated like datetime(): hour 0..23 (no 24:00), minute and
-- second 0..59 (no leap second), a real day of the month (proleptic Gregorian, as both
-- Python and PostgreSQL use). The offset is NOT validated field by field: CPython 3.11 takes
-- "+05:60" as +06:00 and "+00:99" as +01:39, and only refuses a total of 24 h or more.
CREATE OR REPLACE FUNCTION public.pim_timestamp_from_parts(p text[])
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN p IS NULL THEN NULL
    WHEN p[4]::int > 23 OR p[5]::int > 59 OR p[6]::int > 59 THEN NULL
    WHEN p[1]::int < 1 OR p[2]::int < 1 OR p[2]::int > 12 OR p[3]::int < 1 THEN NULL
    WHEN p[3]::int > extract(day FROM make_date(p[1]::int, p[2]::int, 1)
                                      + interval '1 month - 1 day') THEN NULL
    WHEN p[9] IS NOT NULL AND p[10]::int * 60 + coalesce(p[12], '0')::int >= 24 * 60 THEN NULL
    ELSE public.pim_utc_within_years(
      (p[1] || '-' || p[2] || '-' || p[3] || ' ' || p[4] || ':' || p[5] || ':' || p[6]
       || coalesce(p[7], ''))::timestamp
      - make_interval(mins => CASE WHEN p[9] IS NULL THEN 0
                                   ELSE (p[10]::int * 60 + coalesce(p[12], '0')::int)
                                        * CASE p[9] WHEN '-' THEN -1 ELSE 1 END END))
  END
$$;

CREATE OR REPLACE FUNCTION public.pim_legacy_timestamp(value jsonb)
RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT public.pim_timestamp_from_parts(public.pim_timestamp_parts(value))
$$;

-- app.images.normalise.usable_order: the sort value of a legacy `order`, or NULL.
-- Python sees the column through json.loads of PostgreSQL's text of the jsonb, where a
-- number never has an exponent: without a '.', it is an int, compared exactly; with a '.',
-- it is a float, compared as Decimal(repr(float)). So a number with a '.' goes through
-- float8 here too: float8 input rounds like Python's float(), and float8 output (with
-- extra_float_digits >= 1, the default, which backfill.projection sets) is the shortest
-- text that round-trips, like repr(). That makes 0.10000000000000001 equal to 0.1, as in
-- Python. Out of float8 range, Python's float() gives inf (not usable: NULL here) or 0.0,
-- where PostgreSQL would raise: the two bounds below are exact (2^1024 - 2^970 is the
-- halfway point above the largest double, 2^-1075 half the smallest subnormal).
-- A string order is a plain decimal between ASCII whitespace (Python's re.ASCII \s).
CREATE OR REPLACE FUNCTION public.pim_legacy_order(value jsonb)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN jsonb_typeof(value) = 'number' AND strpos(value #>> '{}', '.') = 0
      THEN (value #>> '{}')::numeric
    WHEN jsonb_typeof(value) = 'number' THEN CASE
      WHEN abs((value #>> '{}')::numeric) >= 2::numeric ^ 1024 - 2::numeric ^ 970 THEN NULL
      WHEN abs((value #>> '{}')::numeric) * 2::numeric ^ 1075 <= 1 THEN 0
      ELSE (value #>> '{}')::float8::text::numeric
    END
    WHEN jsonb_typeof(value) = 'string'
         AND (value #>> '{}') ~ '^[ \t\n\r\f\v]*-?[0-9]+(\.[0-9]+)?[ \t\n\r\f\v]*$'
      THEN btrim(value #>> '{}', E' \t\n\r\f\v')::numeric
  END
$$;

-- app.images.normalise._int_within: an integer JSON number within [low, high], else NULL.
-- jsonb_typeof says 'number' for 3 and 3.0 alike, but PostgreSQL keeps the text (3.0 stays
-- 3.0) and json.loads makes 3.0 a float, which Python refuses: so only digits count.
-- Booleans are 'boolean' to jsonb_typeof, so they never get here.
CREATE OR REPLACE FUNCTION public.pim_json_int(value jsonb, low numeric, high numeric)
RETURNS bigint LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN jsonb_typeof(value) = 'number' AND (value #>> '{}') ~ '^-?[0-9]+$'
         AND (value #>> '{}')::numeric BETWEEN low AND high
      THEN (value #>> '{}')::bigint
  END
$$;

-- `not url.strip()`: Python's str.strip() removes every character for which str.isspace()
-- is true; this is that whole list (checked against Python 3.11 over all of Unicode). It
-- needs a UTF-8 database (the E'\uXXXX' escapes).
CREATE OR REPLACE FUNCTION public.pim_is_blank(value text)
RETURNS boolean LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
  SELECT btrim(value, E'\t\n\u000b\f\r\u001c\u001d\u001e\u001f \u0085\u00a0\u1680'
                      || E'\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a'
                      || E'\u2028\u2029\u202f\u205f\u3000') = ''
$$;
