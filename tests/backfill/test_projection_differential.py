"""The set-based SQL projection and the Python projection agree, row for row, on generated
dirty data: the backfill writes exactly what the dual-write would."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from app.images import legacy_image_id
from tests.backfill.projection_harness import (
    RawNumber,
    assert_same_projection,
    make_schema,
    project_in_sql,
    to_json_text,
    use_schema,
)
from tests.images.strategies import (
    URL_POOL,
    bad_url_elements,
    dirty_legacy_columns,
    good_legacy_elements,
    invalid_timestamps,
    mixed_format_arrays,
    non_objects,
    product_ids,
    tags,
    timestamp_texts,
    unusable_orders,
    usable_orders,
)

# Local extensions of tests/images/strategies.py, for what only the SQL can get wrong.

raw_numbers = st.sampled_from(
    [
        "3.0",
        "1.0",
        "2.50",
        "1e2",
        "-0.0",
        "0.1",
        "0.10000000000000001",  # the same Python float as 0.1, not the same numeric
        "0.30000000000000004",
        "1.00000000000000001",
        "12345678901234567890",
        "12345678901234567890.5",
        "1e-400",  # a float that underflows to 0.0 in Python; PostgreSQL's float8 would raise
        "-1e-400",
        "1" + "0" * 400 + ".5",  # inf in Python: not a usable order
    ]
).map(RawNumber)

odd_timestamps = st.sampled_from(
    [
        "2024-01-01T10:00:00+05:60",  # CPython 3.11 takes this as +06:00
        "2024-01-01T10:00:00+00:99",
        "2024-01-01T10:00:00+0599",
        "2024-01-01T10:00:00+23:59",
        "2024-01-01T10:00:00+23:60",
        "2024-01-01T10:00:00-2399",
        "2024-01-01T10:00:00-00",
        "2024-01-01T24:00:00",
        "2024-01-01T23:60:00",
        "2024-01-01T23:59:60",
        "2024-02-29T12:00:00Z",
        "2023-02-29T12:00:00Z",
        "2000-02-29 12:00:00.5",
        "1900-02-29 12:00:00",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59-00:01",
        "0001-01-01T00:00:00+00:01",
        "0001-01-01T00:00:00-00:01",
        "0000-01-01T00:00:00",
        "2024-13-45T00:00:00",
        "2024-01-01T10:00:00.1234567",
        "2024-01-01T10:00:00z",
    ]
)
any_timestamps = st.one_of(timestamp_texts(), invalid_timestamps, odd_timestamps, odd_timestamps)

sizes = st.one_of(
    st.integers(min_value=-2, max_value=5),
    st.sampled_from([2**31 - 1, 2**31, 2**63 - 1, 2**63, True, False, 3.0, "12", None, [1]]),
    raw_numbers,
)

uuid_texts = st.uuids().map(str)


@st.composite
def full_format_elements(draw: st.DrawFn, product_id: int) -> dict[str, Any]:
    """An object with a usable or broken url and any of the full-format keys, dirty."""
    element: dict[str, Any] = {
        # mostly usable, often duplicated, sometimes blank or not a string
        "url": draw(st.sampled_from([*URL_POOL, *URL_POOL, "", " \u3000", 7]))
    }
    if draw(st.booleans()):
        # derived ids of this product's likely images, so that carried ids collide with them
        derived = st.builds(
            lambda url, occurrence: str(legacy_image_id(product_id, url, occurrence)),
            st.sampled_from(URL_POOL),
            st.integers(min_value=0, max_value=2),
        )
        element["id"] = draw(
            st.one_of(
                uuid_texts,
                uuid_texts.map(str.upper),
                derived,
                st.sampled_from(["not-a-uuid", "{12345678-1234-1234-1234-123456789abc}", 5]),
                st.none(),
            )
        )
    if draw(st.booleans()):
        element["order"] = draw(st.one_of(usable_orders, unusable_orders, raw_numbers, raw_numbers))
    if draw(st.booleans()):
        element["is_label"] = draw(st.sampled_from([True, False, "true", 1, 0, None]))
    if draw(st.booleans()):
        element["alt_text"] = draw(st.one_of(st.none(), st.text(max_size=12), st.integers()))
    if draw(st.booleans()):
        element["tags"] = draw(
            st.one_of(
                st.lists(st.one_of(tags, st.integers(), st.none()), max_size=4),
                st.text(max_size=5),
                st.none(),
            )
        )
    if draw(st.booleans()):
        element["mime_type"] = draw(st.sampled_from(["image/jpeg", None, 3, ["image/png"]]))
    for key in ("file_size", "width", "height"):
        if draw(st.booleans()):
            element[key] = draw(sizes)
    for key in ("created_at", "updated_at"):
        if draw(st.booleans()):
            element[key] = draw(any_timestamps)
    return element


@st.composite
def columns(draw: st.DrawFn, product_id: int) -> Any:
    """A whole column: the shared dirty columns, or arrays of dirty full-format elements."""
    tricky = st.lists(
        st.one_of(
            full_format_elements(product_id),
            full_format_elements(product_id),
            full_format_elements(product_id),
            good_legacy_elements(),
            bad_url_elements,
            non_objects,
        ),
        min_size=2,
        max_size=8,
    )
    kind = draw(st.sampled_from(["tricky", "shared", "mixed", "tricky", "tricky"]))
    event(f"column: {kind}")
    strategy = {"shared": dirty_legacy_columns, "mixed": mixed_format_arrays(), "tricky": tricky}
    return draw(strategy[kind])


@pytest.fixture(scope="module")
def schema(engine: Engine) -> str:
    """One tenant for the whole module; every example rolls its transaction back."""
    return make_schema(engine)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), product_id=product_ids, source=st.sampled_from(["pythonApiWOO", "stoflow"]))
def test_sql_and_python_projections_give_identical_rows(
    engine: Engine, schema: str, data: st.DataObject, product_id: int, source: str
) -> None:
    raw = data.draw(columns(product_id), label="images")
    images_json = to_json_text(raw)
    assume("\\u0000" not in images_json)  # PostgreSQL text (so jsonb) cannot hold NUL
    with engine.connect() as connection:
        try:
            use_schema(connection, schema)
            outcome = project_in_sql(connection, images_json, source, product_id)
        finally:
            connection.rollback()  # each example leaves nothing behind
    event(f"images: {min(len(outcome.images), 3)}+, rejected: {min(len(outcome.rejected), 1)}+")
    event(f"a label: {any(image.is_label for image in outcome.images)}")
    assert_same_projection(outcome, source)
