-- Helper functions of the set-based projection, in `public` with a `pim_` prefix. No
-- extension is needed (the embedded PostgreSQL has no uuid-ossp and no pgcrypto).
-- Each mirrors one rule of app/images/ (normalise.py, identity.py); the tests in
-- tests/backfill/test_projection_*.py prove they agree. Applied by migration 0006 and by
-- backfill.projection.apply_functions; every statement is CREATE OR REPLACE, so the file can
-- be re-applied at any time. Keep the signatures in step with 0006's FUNCTIONS (its downgrade).
--
-- pim_legacy_order, pim_json_int and pim_is_blank are plain SQL `SELECT <expression>`
-- bodies, inlined by the planner; pim_image_id and pim_legacy_timestamp are plpgsql, the
-- fastest form measured for them (docs/benchmarks.md). A change of a body here reaches an
-- existing database through a revision that re-applies this file (0006, 0010, 0013).

-- app.images.identity.legacy_image_id: uuid3(namespace, "<product_id>|<occurrence>|<url>"),
-- i.e. md5(namespace bytes || UTF-8 name) with the version nibble set to 3 (byte 6) and the
-- RFC 4122 variant bits 10 (byte 8). plpgsql, so md5 runs once per call: as a SQL function
-- with a FROM it cannot be inlined and cost 3.7 us per id here, as plpgsql 1.3 us.
CREATE OR REPLACE FUNCTION public.pim_image_id(product_id bigint, occurrence bigint, url text)
RETURNS uuid LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  digest bytea := decode(md5(decode('00751c3029d45b71ac551112b96d4b14', 'hex')
                             || convert_to(product_id::text || '|' || occurrence::text
                                           || '|' || url, 'UTF8')), 'hex');
BEGIN
  RETURN encode(set_byte(set_byte(digest, 6, (get_byte(digest, 6) & 15) | 48),
                         8, (get_byte(digest, 8) & 63) | 128), 'hex')::uuid;
END
$$;

-- app.images.normalise.free_image_id: the first attempt of an image's derived id that is not
-- in `taken` (the ids other images of the product carry). Attempt 0 is pim_image_id; attempt
-- k >= 1 names "<product_id>|<occurrence>#<k>|<url>". Only called for the rare image whose
-- derived id another image carries, so a loop is fine here.
CREATE OR REPLACE FUNCTION public.pim_free_image_id(product_id bigint, occurrence bigint,
                                                    url text, taken uuid[])
RETURNS uuid LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  attempt bigint := 0;
  candidate uuid := public.pim_image_id(product_id, occurrence, url);
  digest bytea;
BEGIN
  WHILE candidate = ANY(coalesce(taken, '{}')) LOOP
    attempt := attempt + 1;
    digest := decode(md5(decode('00751c3029d45b71ac551112b96d4b14', 'hex')
                         || convert_to(product_id::text || '|' || occurrence::text || '#'
                                       || attempt::text || '|' || url, 'UTF8')), 'hex');
    candidate := encode(set_byte(set_byte(digest, 6, (get_byte(digest, 6) & 15) | 48),
                                 8, (get_byte(digest, 8) & 63) | 128), 'hex')::uuid;
  END LOOP;
  RETURN candidate;
END
$$;

-- app.images.normalise.parse_legacy_timestamp: exactly what CPython 3.11's
-- datetime.fromisoformat accepts, as UTC, or NULL; it never raises. The date and time
-- fields are validated like datetime(): hour 0..23 (no 24:00), minute and second 0..59 (no
-- leap second), a real day of the month. The offset is NOT validated field by field:
-- CPython 3.11 takes "+05:60" as +06:00 and "+00:99" as +01:39, and only refuses a total of
-- 24 h or more. A result outside years 1..9999 in UTC is NULL (astimezone overflows there).
-- The accepted shape is the pattern of app.images.normalise.TIMESTAMP_PATTERN,
--   ^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$
-- checked byte by byte rather than by that regular expression. Speed, measured here per
-- value (docs/benchmarks.md): the regular expression cost 25-36 us with capture groups and
-- 1.7 to 4 us as a boolean `~` (the regex engine widens the text to wide characters first);
-- a text's n-th character costs a walk over the ones before it in UTF-8. The UTF-8 bytes,
-- read in constant time by get_byte, bring a valid value from 4.3 to 2.8 us. No
-- EXCEPTION block (a subtransaction per call), and no cast is reached by a value that could
-- make it raise: every field is known to be digits first. STRICT: a missing key (SQL NULL)
-- is not a call at all.
CREATE OR REPLACE FUNCTION public.pim_legacy_timestamp(value jsonb)
RETURNS timestamptz LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
  t text;
  b bytea;  -- t's UTF-8 bytes
  year int;
  month int;
  day int;
  fraction_length int;  -- of ".ffffff", the dot included; 0 when there is none
  zone text;
  offset_minutes int;
  utc timestamp;
BEGIN
  IF jsonb_typeof(value) <> 'string' THEN
    RETURN NULL;
  END IF;
  t := value #>> '{}';
  b := convert_to(t, 'UTF8');
  IF octet_length(b) NOT BETWEEN 19 AND 32 THEN  -- the shortest and the longest the shape allows
    RETURN NULL;
  END IF;
  -- "YYYY-MM-DD", "T" or " ", "HH:MM:SS": 19 ASCII bytes, a digit being 48..57
  IF get_byte(b, 0) NOT BETWEEN 48 AND 57 OR get_byte(b, 1) NOT BETWEEN 48 AND 57
     OR get_byte(b, 2) NOT BETWEEN 48 AND 57 OR get_byte(b, 3) NOT BETWEEN 48 AND 57
     OR get_byte(b, 4) <> 45  -- '-'
     OR get_byte(b, 5) NOT BETWEEN 48 AND 57 OR get_byte(b, 6) NOT BETWEEN 48 AND 57
     OR get_byte(b, 7) <> 45
     OR get_byte(b, 8) NOT BETWEEN 48 AND 57 OR get_byte(b, 9) NOT BETWEEN 48 AND 57
     OR get_byte(b, 10) NOT IN (84, 32)  -- 'T', ' '
     OR get_byte(b, 11) NOT BETWEEN 48 AND 57 OR get_byte(b, 12) NOT BETWEEN 48 AND 57
     OR get_byte(b, 13) <> 58  -- ':'
     OR get_byte(b, 14) NOT BETWEEN 48 AND 57 OR get_byte(b, 15) NOT BETWEEN 48 AND 57
     OR get_byte(b, 16) <> 58
     OR get_byte(b, 17) NOT BETWEEN 48 AND 57 OR get_byte(b, 18) NOT BETWEEN 48 AND 57 THEN
    RETURN NULL;
  END IF;
  -- From here the first 19 characters are those 19 bytes.
  year := substr(t, 1, 4)::int;
  month := substr(t, 6, 2)::int;
  day := substr(t, 9, 2)::int;
  IF year < 1 OR month NOT BETWEEN 1 AND 12 OR day < 1
     OR substr(t, 12, 2)::int > 23 OR substr(t, 15, 2)::int > 59 OR substr(t, 18, 2)::int > 59
     -- a date that matches the pattern but does not exist (2024-02-30)
     OR day > 28 AND day > (CASE WHEN month IN (4, 6, 9, 11) THEN 30
                                 WHEN month <> 2 THEN 31
                                 WHEN year % 4 = 0 AND (year % 100 <> 0 OR year % 400 = 0) THEN 29
                                 ELSE 28 END) THEN
    RETURN NULL;
  END IF;
  -- After the seconds: an optional ".ffffff" (1 to 6 digits), then the zone.
  fraction_length := CASE WHEN octet_length(b) = 19 THEN 0
                          WHEN get_byte(b, 19) <> 46 THEN 0  -- '.'
                          ELSE octet_length(b) - 19
                               - octet_length(ltrim(substring(b FROM 21),
                                                    '\x30313233343536373839'::bytea))
                     END;
  zone := substr(t, 20 + fraction_length);
  IF fraction_length NOT IN (0, 2, 3, 4, 5, 6, 7)
     OR zone NOT IN ('', 'Z')
        AND translate(zone, '0123456789', '9999999999')
            NOT IN ('+99', '-99', '+9999', '-9999', '+99:99', '-99:99') THEN
    RETURN NULL;
  END IF;
  IF zone IN ('', 'Z') THEN
    RETURN left(t, 19 + fraction_length)::timestamp AT TIME ZONE 'UTC';  -- years 1..9999
  END IF;
  offset_minutes := substr(zone, 2, 2)::int * 60
                    + CASE WHEN length(zone) > 3 THEN right(zone, 2)::int ELSE 0 END;
  IF offset_minutes >= 24 * 60 THEN
    RETURN NULL;
  END IF;
  utc := left(t, 19 + fraction_length)::timestamp
         - make_interval(mins => CASE left(zone, 1) WHEN '-' THEN -offset_minutes
                                    ELSE offset_minutes END);
  IF utc < '0001-01-01 00:00:00' OR utc >= '10000-01-01 00:00:00' THEN
    RETURN NULL;
  END IF;
  RETURN utc AT TIME ZONE 'UTC';
END
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
      -- From 2^53 on every double is an integer: its exact value, from the shortest text
      -- (within half a unit in the last place of it) rounded to that unit.
      WHEN abs((value #>> '{}')::float8) >= 2::float8 ^ 53 THEN
        round((value #>> '{}')::float8::text::numeric
              / 2::numeric ^ (floor(log(2, abs((value #>> '{}')::float8::text::numeric))) - 52))
        * 2::numeric ^ (floor(log(2, abs((value #>> '{}')::float8::text::numeric))) - 52)
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
