"""Each public.pim_* helper function agrees with the Python rule it mirrors, value by value.

Cheap (one SELECT per example), so these explore far more values than the whole-product
differential test can.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from app.images import legacy_image_id
from app.images.normalise import (
    MAX_BIGINT,
    MAX_INT,
    _int_within,
    parse_legacy_timestamp,
    usable_order,
)
from backfill.projection import apply_functions
from tests.backfill.test_projection_differential import any_timestamps, raw_numbers, sizes
from tests.images.strategies import URL_POOL, unusable_orders, urls, usable_orders

MANY = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Anything shaped like the timestamp pattern, with any digits: mostly impossible dates.
pattern_shaped = st.from_regex(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)?\Z"
)
# Plausible fields, so that most are real dates and the edges (month ends, offsets) show.
plausible = st.builds(
    "{:04d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}{}{}".format,
    st.sampled_from([1, 2, 1900, 2000, 2023, 2024, 9998, 9999]),
    st.integers(1, 13),
    st.integers(0, 32),
    st.sampled_from(["T", " "]),
    st.integers(0, 24),
    st.integers(0, 60),
    st.integers(0, 60),
    st.sampled_from(["", ".5", ".123456", ".000001"]),
    st.one_of(
        st.sampled_from(["", "Z"]),
        st.builds(
            "{}{:02d}{}{}".format,
            st.sampled_from(["+", "-"]),
            st.integers(0, 25),
            st.sampled_from(["", ":"]),
            st.one_of(st.just(""), st.integers(0, 99).map("{:02d}".format)),
        ),
    ),
)

# JSON number texts of every shape PostgreSQL accepts, many beyond a double's precision.
number_texts = st.from_regex(
    r"\A-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,3})?\Z"
) | st.floats(allow_nan=False, allow_infinity=False).map(repr)


@pytest.fixture(scope="module")
def connection(engine: Engine) -> Iterator[Connection]:
    """One connection for the module, in a transaction rolled back at the end."""
    with engine.connect() as connection:
        apply_functions(connection)
        connection.execute(text("SET LOCAL extra_float_digits = 1"))
        yield connection
        connection.rollback()


def sql_value(connection: Connection, expression: str, value: Any) -> Any:
    """Evaluate an expression of `v` (the value as jsonb), from a real column, not a constant."""
    return connection.execute(
        text(f"SELECT {expression} FROM (SELECT CAST(:v AS jsonb) AS v) AS input"),
        {"v": value},
    ).scalar_one()


def stored(connection: Connection, json_text: str) -> Any:
    """The JSON text as PostgreSQL stores it and psycopg reads it back."""
    return connection.execute(text("SELECT CAST(:v AS jsonb)"), {"v": json_text}).scalar_one()


@MANY
@given(value=st.one_of(pattern_shaped, plausible, plausible, any_timestamps))
def test_legacy_timestamp(connection: Connection, value: Any) -> None:
    got = sql_value(connection, "public.pim_legacy_timestamp(v)", json.dumps(value))
    assert got == parse_legacy_timestamp(value)


@MANY
@given(
    json_text=st.one_of(
        number_texts,
        st.one_of(usable_orders, unusable_orders).map(json.dumps),
        raw_numbers.map(lambda number: number.literal),
        st.text(alphabet=" \t\n\r\x0b\x0c\x1c\xa00123456789.-+e", max_size=8).map(json.dumps),
    )
)
# Shortest texts disagree at a tie: Python's repr gives 4.00000000000001e+16 (the midpoint
# of two doubles), PostgreSQL 4.0000000000000096e+16; both take the double's exact value.
@example(json_text="40000000000000096.0")
@example(json_text="-9007199254740993.0")
def test_legacy_order(connection: Connection, json_text: str) -> None:
    value = stored(connection, json_text)
    expected = usable_order(value)
    got = sql_value(connection, "public.pim_legacy_order(v)", json_text)
    if expected is None:
        assert got is None
    else:
        assert isinstance(got, Decimal)
        assert got == expected  # numerically: equal values sort alike


@MANY
@given(
    json_text=st.one_of(number_texts, sizes.map(lambda size: getattr(size, "literal", None))),
    bounds=st.sampled_from([(0, MAX_BIGINT), (1, MAX_INT)]),
)
def test_json_int(connection: Connection, json_text: str | None, bounds: tuple[int, int]) -> None:
    json_text = json_text if json_text is not None else "null"
    low, high = bounds
    expected = _int_within(stored(connection, json_text), low, high)
    got = sql_value(connection, f"public.pim_json_int(v, {low}, {high})", json_text)
    assert got == expected


def test_json_int_refuses_booleans_and_floats(connection: Connection) -> None:
    for json_text in ("true", "false", "3.0", "3.5", '"3"', "[3]"):
        assert sql_value(connection, "public.pim_json_int(v, 0, 10)", json_text) is None
    assert sql_value(connection, "public.pim_json_int(v, 0, 10)", "3") == 3


@MANY
@given(
    value=st.text(
        alphabet=st.sampled_from(
            [chr(code) for code in range(0x2010)]
            + ["\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u200b", "\ufeff", "\u180e"]
        ).filter(lambda char: char != "\x00"),
        max_size=6,
    )
)
def test_is_blank(connection: Connection, value: str) -> None:
    got = connection.execute(text("SELECT public.pim_is_blank(:v)"), {"v": value}).scalar_one()
    assert got == (not value.strip())


def test_is_blank_knows_every_python_whitespace(connection: Connection) -> None:
    spaces = "".join(chr(code) for code in range(1, 0x110000) if chr(code).isspace())
    not_spaces = "\u200b\ufeff\u180e\x00"[:-1]
    assert connection.execute(text("SELECT public.pim_is_blank(:v)"), {"v": spaces}).scalar_one()
    for char in not_spaces:
        blank = connection.execute(text("SELECT public.pim_is_blank(:v)"), {"v": char})
        assert blank.scalar_one() is False


@MANY
@given(
    product_id=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    occurrence=st.integers(min_value=0, max_value=2**31),
    url=st.one_of(st.sampled_from(URL_POOL), urls),
)
def test_image_id(connection: Connection, product_id: int, occurrence: int, url: str) -> None:
    assume("\x00" not in url)
    got = connection.execute(
        text("SELECT public.pim_image_id(:p, :o, :u)"),
        {"p": product_id, "o": occurrence, "u": url},
    ).scalar_one()
    assert got == legacy_image_id(product_id, url, occurrence)
