"""Explicit examples of every tricky rule of the SQL projection, plus idempotence and the
products it must leave alone. Each example is also checked against the Python projection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from uuid import UUID

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from app.images import legacy_image_id
from backfill.projection import project_products, record_rejections
from tests.backfill.projection_harness import (
    LEGACY_SOURCES,
    PRODUCT_CREATED_AT,
    Outcome,
    RawNumber,
    assert_same_projection,
    insert_product,
    make_schema,
    project_in_sql,
    read_images,
    read_rejected,
    to_json_text,
    use_schema,
)

LEGACY = "pythonApiWOO"
OTHER = "stoflow"
PRODUCT_ID = 4242
CARRIED = "6f1c2d1e-8a4b-4c3d-9e2f-0a1b2c3d4e5f"


@pytest.fixture(scope="module")
def schema(engine: Engine) -> str:
    """One tenant for the module."""
    return make_schema(engine)


@pytest.fixture
def connection(engine: Engine, schema: str) -> Iterator[Connection]:
    """A transaction on the module's tenant, rolled back after the test."""
    with engine.connect() as connection:
        use_schema(connection, schema)
        yield connection
        connection.rollback()


def urls(outcome: Outcome) -> list[str]:
    return [image.url for image in outcome.images]


def labels(outcome: Outcome) -> list[bool]:
    return [image.is_label for image in outcome.images]


def check_string_orders(outcome: Outcome) -> None:
    assert urls(outcome) == ["b", "d", "a", "c", "e"]


def check_float_orders(outcome: Outcome) -> None:
    # 0.10000000000000001 is the Python float 0.1: it ties with "0.1", position breaks it
    assert urls(outcome) == ["z", "c", "d", "b", "a"]


def check_bool_orders(outcome: Outcome) -> None:
    assert urls(outcome) == ["b", "a", "c"]


def check_sizes(outcome: Outcome) -> None:
    (image,) = outcome.images
    assert (image.file_size, image.width, image.height) == (None, 3, None)


def check_integral_sizes(outcome: Outcome) -> None:
    (image,) = outcome.images
    assert (image.file_size, image.width, image.height) == (100, None, 2**31 - 1)


def check_invalid_dates(outcome: Outcome) -> None:
    first, second, third = outcome.images
    assert first.created_at == PRODUCT_CREATED_AT == first.updated_at
    assert second.created_at == datetime(2024, 1, 1, 4, 0, tzinfo=UTC)  # +05:60 is +06:00
    assert second.updated_at == second.created_at  # 2024-02-30 is no date
    assert third.created_at == datetime(2024, 3, 1, 12, 0, 0, 500000, tzinfo=UTC)


def check_carried_ids(outcome: Outcome) -> None:
    first, second, third, fourth = outcome.images
    assert first.id == UUID(CARRIED)
    assert second.id == legacy_image_id(PRODUCT_ID, "b", 0)  # duplicate: derived
    # x carries the id that image c derives: x keeps it, c takes its next attempt
    assert third.id == legacy_image_id(PRODUCT_ID, "c", 0)
    assert fourth.id == legacy_image_id(PRODUCT_ID, "c", 0, attempt=1)


def check_long_tag(outcome: Outcome) -> None:
    assert outcome.images[0].tags == ("short", "\u00e9" * 200)


def check_own_derived_id(outcome: Outcome) -> None:
    assert [image.id for image in outcome.images] == [
        legacy_image_id(PRODUCT_ID, "a", 0),
        legacy_image_id(PRODUCT_ID, "a", 1),
    ]


def check_two_labels(outcome: Outcome) -> None:
    assert urls(outcome) == ["b", "a", "c"]
    assert labels(outcome) == [False, True, False]  # the last labelled in normalised order


def check_all_labels_false(outcome: Outcome) -> None:
    assert labels(outcome) == [False, False]  # an explicit false turns the label rule off


def check_legacy_label_rule(outcome: Outcome) -> None:
    assert labels(outcome) == [False, False, True]


def check_no_label(outcome: Outcome) -> None:
    assert not any(labels(outcome))


def check_metadata(outcome: Outcome) -> None:
    (image,) = outcome.images
    assert image.alt_text is None
    assert image.tags == ("a", "b")
    assert image.mime_type == "image/png"


def check_rejected_column(reason: str, raw: object) -> Callable[[Outcome], None]:
    def check(outcome: Outcome) -> None:
        assert outcome.images == []
        assert [(position, why, value) for position, why, value, _ in outcome.rejected] == [
            (-1, reason, raw)
        ]

    return check


def check_rejected_elements(outcome: Outcome) -> None:
    assert urls(outcome) == [" x "]
    assert [(position, reason) for position, reason, _, _ in outcome.rejected] == [
        (0, "not_an_object"),
        (1, "missing_url"),
        (2, "missing_url"),
        (3, "url_not_a_string"),
        (4, "empty_url"),
        (5, "empty_url"),
    ]


CASES: dict[str, tuple[object, str, Callable[[Outcome], None]]] = {
    "string orders": (
        [
            {"url": "a", "order": "2"},
            {"url": "b", "order": " -1 "},
            {"url": "c", "order": "1e3"},  # not a plain decimal: unusable, sorts after
            {"url": "d", "order": "\t1.50\n"},
            {"url": "e", "order": "٣"},  # not an ASCII digit
        ],
        OTHER,
        check_string_orders,
    ),
    "float orders": (
        [
            {"url": "a", "order": 2.5},
            {"url": "b", "order": 1},
            {"url": "c", "order": RawNumber("0.10000000000000001")},
            {"url": "d", "order": "0.1"},
            {"url": "z", "order": RawNumber("1e-400")},  # 0.0 in Python
        ],
        OTHER,
        check_float_orders,
    ),
    "bool orders": (
        [{"url": "a", "order": True}, {"url": "b", "order": 5}, {"url": "c", "order": False}],
        OTHER,
        check_bool_orders,
    ),
    "3.0 is not an integer size": (
        [{"url": "a", "file_size": RawNumber("3.0"), "width": 3, "height": True}],
        OTHER,
        check_sizes,
    ),
    "1e2 is stored as the integer 100": (
        [{"url": "a", "file_size": RawNumber("1e2"), "width": 2**31, "height": 2**31 - 1}],
        OTHER,
        check_integral_sizes,
    ),
    "dates that match the pattern but are not dates": (
        [
            {"url": "a", "order": 0, "created_at": "2024-13-45T10:00:00"},
            {
                "url": "b",
                "order": 1,
                "created_at": "2024-01-01T10:00:00+05:60",
                "updated_at": "2024-02-30T10:00:00Z",
            },
            {"url": "c", "order": 2, "created_at": "2024-03-01 12:00:00.5"},
        ],
        OTHER,
        check_invalid_dates,
    ),
    "carried ids: duplicate, and another image's derived id": (
        [
            {"url": "a", "order": 0, "id": CARRIED},
            {"url": "b", "order": 1, "id": CARRIED.upper()},
            {"url": "x", "order": 2, "id": str(legacy_image_id(PRODUCT_ID, "c", 0))},
            {"url": "c", "order": 3},
        ],
        OTHER,
        check_carried_ids,
    ),
    "a tag longer than history keeps": (
        [{"url": "a", "tags": ["short", "\u00e9" * 250, 7]}],
        OTHER,
        check_long_tag,
    ),
    "a carried id that the image derives itself": (
        [
            {"url": "a", "order": 0},
            {"url": "a", "order": 1, "id": str(legacy_image_id(PRODUCT_ID, "a", 1))},
        ],
        OTHER,
        check_own_derived_id,
    ),
    "two labels in full-format elements": (
        [
            {"url": "a", "order": 1, "is_label": True},
            {"url": "b", "order": 0, "is_label": True},
            {"url": "c", "order": 2, "is_label": "true"},
        ],
        LEGACY,
        check_two_labels,
    ),
    "every is_label false": (
        [{"url": "a", "is_label": False}, {"url": "b"}],
        LEGACY,
        check_all_labels_false,
    ),
    "legacy source: the last image is the label": (
        [{"url": "a", "order": 2}, {"url": "b", "order": 0}, {"url": "c", "order": 5}],
        LEGACY,
        check_legacy_label_rule,
    ),
    "legacy source with one image: no label": ([{"url": "a"}], LEGACY, check_no_label),
    "other source: no label": ([{"url": "a"}, {"url": "b"}], OTHER, check_no_label),
    "non-boolean is_label values are ignored": (
        [{"url": "a", "is_label": 1}, {"url": "b", "is_label": "true"}],
        OTHER,
        check_no_label,
    ),
    "metadata of the wrong types": (
        [{"url": "a", "alt_text": 5, "tags": ["a", 1, None, "b"], "mime_type": "image/png"}],
        OTHER,
        check_metadata,
    ),
    "rejected elements": (
        [5, {}, {"url": None}, {"url": 3}, {"url": " \t"}, {"url": "\u3000"}, {"url": " x "}],
        OTHER,
        check_rejected_elements,
    ),
    "non-array column": (
        {"url": "a"},
        LEGACY,
        check_rejected_column("column_not_an_array", {"url": "a"}),
    ),
    "string column": ("a.jpg", LEGACY, check_rejected_column("column_not_an_array", "a.jpg")),
    "JSON null column": (None, LEGACY, check_rejected_column("column_null", None)),
    "empty array": ([], LEGACY, check_no_label),
}


@pytest.mark.parametrize("name", list(CASES))
def test_tricky_case(connection: Connection, name: str) -> None:
    raw, source, check = CASES[name]
    outcome = project_in_sql(connection, to_json_text(raw), source, PRODUCT_ID)
    assert_same_projection(outcome, source)
    check(outcome)


def test_rejection_details_match_python(connection: Connection) -> None:
    outcome = project_in_sql(connection, to_json_text([True, {"url": [1]}]), OTHER)
    assert [detail for *_, detail in outcome.rejected] == [
        "element 0 is a boolean, not an object with a url",
        "element 1 has a url that is a array, not a string",
    ]
    assert_same_projection(outcome, OTHER)


def test_running_twice_inserts_nothing_the_second_time(connection: Connection) -> None:
    raw = [{"url": "a"}, {"url": "a"}, 7, {"url": "b", "order": 0}]
    first = project_in_sql(connection, to_json_text(raw), LEGACY)
    assert (first.inserted, first.recorded) == (3, 1)
    assert project_products(connection, [first.product_id], LEGACY_SOURCES) == 0
    assert record_rejections(connection, [first.product_id], "again") == 0
    assert read_images(connection, first.product_id) == first.images
    assert read_rejected(connection, first.product_id) == first.rejected


def test_a_product_that_already_has_rows_is_left_alone(connection: Connection) -> None:
    first = project_in_sql(connection, to_json_text([{"url": "a"}, {"url": "b"}]), LEGACY)
    # the dual-write changed the table since; the JSONB says something else entirely
    connection.execute(
        text("UPDATE products SET images = CAST(:images AS jsonb) WHERE id = :id"),
        {"images": to_json_text([{"url": "c"}]), "id": first.product_id},
    )
    connection.execute(
        text("DELETE FROM product_images WHERE product_id = :id AND url = 'a'"),
        {"id": first.product_id},
    )
    assert project_products(connection, [first.product_id], LEGACY_SOURCES) == 0
    assert read_images(connection, first.product_id) == first.images[1:]


def test_a_batch_projects_only_the_listed_products(connection: Connection) -> None:
    columns = [[{"url": "a"}, {"url": "b"}], None, [], [{"url": "c"}, 1], {"url": "d"}]
    ids = [insert_product(connection, to_json_text(column), LEGACY) for column in columns]
    outside = insert_product(connection, to_json_text([{"url": "e"}]), LEGACY)
    assert project_products(connection, ids, LEGACY_SOURCES) == 3
    assert record_rejections(connection, ids, "test") == 3
    assert project_products(connection, [], LEGACY_SOURCES) == 0
    assert read_images(connection, outside) == []
    assert [image.url for image in read_images(connection, ids[0])] == ["a", "b"]
    assert [image.is_label for image in read_images(connection, ids[0])] == [False, True]


def test_no_legacy_sources_means_no_label_rule(connection: Connection) -> None:
    product_id = insert_product(connection, to_json_text([{"url": "a"}, {"url": "b"}]), LEGACY)
    assert project_products(connection, [product_id], []) == 2
    assert not any(image.is_label for image in read_images(connection, product_id))


def test_runs_on_a_session(engine: Engine, schema: str) -> None:
    with Session(engine) as session:
        session.execute(text(f'SET LOCAL search_path TO "{schema}", public'))
        product_id = int(
            session.execute(
                text(
                    "INSERT INTO products (title, price, images) "
                    "VALUES ('p', 1, CAST(:images AS jsonb)) RETURNING id"
                ),
                {"images": to_json_text([{"url": "a"}, 3])},
            ).scalar_one()
        )
        assert project_products(session, [product_id], LEGACY_SOURCES) == 1
        assert record_rejections(session, [product_id], "test") == 1
        session.rollback()
