"""The label report's SQL (`report labels`, the console) counts what the Python label rule
decides, on generated dirty data: a legacy product gets a label when normalise_legacy gives
it one (two or more images, or an explicit boolean `is_label` true; any explicit boolean
switches the rule off), needs review when it has exactly one image and no explicit flag."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, text

from app.core import migrate
from app.core.database import tenant_schema
from app.images import normalise_legacy
from backfill.labels import COUNTS
from backfill.projection import project_products, sql
from tests.backfill.projection_harness import (
    LEGACY_SOURCES,
    PRODUCT_CREATED_AT,
    insert_product,
    make_schema,
    to_json_text,
    use_schema,
)
from tests.backfill.test_cli import backfill
from tests.backfill.test_contract import ready_tenant
from tests.backfill.test_projection_differential import columns
from tests.images.strategies import product_ids

URL = "https://cdn.example.com/p/{}.jpg"


@dataclass(frozen=True)
class Drawn:
    """One product of an example: its column, source, and what happens to it in the table."""

    product_id: int
    column: Any
    source: str
    is_migrated: bool  # projected into product_images by the backfill
    label_cleared: bool  # then its label unset (an override, an edit)


@st.composite
def explicit_label_columns(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Arrays where boolean `is_label`s switch the rule off: all false, one true, several."""
    size = draw(st.integers(1, 4))
    flags = draw(st.lists(st.sampled_from([True, False, None, "true"]), min_size=size))
    return [
        {"url": URL.format(i), **({} if flag is None else {"is_label": flag})}
        for i, flag in enumerate(flags[:size])
    ]


@st.composite
def catalogues(draw: st.DrawFn) -> list[Drawn]:
    ids = draw(st.lists(product_ids, min_size=1, max_size=6, unique=True))
    return [
        Drawn(
            product_id=product_id,
            column=draw(st.one_of(columns(product_id), explicit_label_columns())),
            source=draw(st.sampled_from(["pythonApiWOO", "stoflow"])),
            is_migrated=draw(st.booleans()),
            label_cleared=draw(st.booleans()),
        )
        for product_id in ids
    ]


def counts_by_the_python_rule(connection: Connection, catalogue: list[Drawn]) -> dict[str, int]:
    """The report's counts from normalise_legacy of each column as PostgreSQL stores it."""
    counts = dict.fromkeys(COUNTS, 0)
    for product in catalogue:
        stored = connection.execute(
            text("SELECT images FROM products WHERE id = :id"), {"id": product.product_id}
        ).scalar_one()
        is_legacy = product.source in LEGACY_SOURCES
        normalised = normalise_legacy(
            stored,
            product_id=product.product_id,
            product_created_at=PRODUCT_CREATED_AT,
            is_legacy_source=is_legacy,
        )
        rule_label = any(image.is_label for image in normalised.images)
        is_migrated = product.is_migrated and bool(normalised.images)
        has_label = is_migrated and rule_label and not product.label_cleared
        counts["legacy_products"] += is_legacy
        counts["rule_labels"] += is_legacy and rule_label
        counts["review_single_image"] += is_legacy and normalised.needs_label_review
        counts["legacy_without_images"] += is_legacy and not normalised.images
        counts["migrated_products"] += is_migrated
        counts["table_labels"] += has_label
        counts["labels_outside_rule"] += has_label and not is_legacy
        counts["legacy_unlabelled_in_table"] += (
            is_legacy and is_migrated and rule_label and not has_label
        )
    return counts


def counts_by_the_report_sql(connection: Connection) -> dict[str, int]:
    row = connection.execute(
        text(sql("label_report")), {"legacy_sources": list(LEGACY_SOURCES)}
    ).one()
    return {name: int(getattr(row, name)) for name in COUNTS}


@pytest.fixture(scope="module")
def schema(engine: Engine) -> str:
    """One tenant for the whole module; every example rolls its transaction back."""
    return make_schema(engine)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(catalogue=catalogues())
def test_the_report_sql_counts_what_the_python_label_rule_decides(
    engine: Engine, schema: str, catalogue: list[Drawn]
) -> None:
    texts = [to_json_text(product.column) for product in catalogue]
    assume(not any("\\u0000" in t for t in texts))  # PostgreSQL text cannot hold NUL
    with engine.connect() as connection:
        try:
            use_schema(connection, schema)
            for product, images_json in zip(catalogue, texts, strict=True):
                insert_product(connection, images_json, product.source, product.product_id)
            migrated = [p.product_id for p in catalogue if p.is_migrated]
            project_products(connection, migrated, LEGACY_SOURCES)
            cleared = [p.product_id for p in catalogue if p.is_migrated and p.label_cleared]
            connection.execute(
                text("UPDATE product_images SET is_label = false WHERE product_id = ANY(:ids)"),
                {"ids": cleared},
            )
            expected = counts_by_the_python_rule(connection, catalogue)
            reported = counts_by_the_report_sql(connection)
        finally:
            connection.rollback()  # each example leaves nothing behind
    event(f"legacy products with a label: {min(expected['rule_labels'], 2)}+")
    event(f"unlabelled in table: {min(expected['legacy_unlabelled_in_table'], 1)}+")
    assert reported == expected


@pytest.mark.parametrize(
    ("column", "rule_labels", "review_single_image"),
    [
        ([{"url": URL.format(0)}, {"url": URL.format(1)}], 1, 0),
        ([{"url": URL.format(0)}], 0, 1),
        ([{"url": URL.format(0), "is_label": False}, {"url": URL.format(1)}], 0, 0),
        ([{"url": URL.format(0), "is_label": True}], 1, 0),
        ([{"url": URL.format(0), "is_label": False}], 0, 0),
        ([{"url": " "}, {"url": URL.format(1)}], 0, 1),
    ],
)
def test_an_explicit_is_label_switches_the_rule_off_in_the_report_too(
    engine: Engine, schema: str, column: Any, rule_labels: int, review_single_image: int
) -> None:
    with engine.connect() as connection:
        try:
            use_schema(connection, schema)
            insert_product(connection, to_json_text(column), "pythonApiWOO")
            reported = counts_by_the_report_sql(connection)
        finally:
            connection.rollback()
    assert (reported["rule_labels"], reported["review_single_image"]) == (
        rule_labels,
        review_single_image,
    )


def test_a_contracted_tenant_is_reported_from_its_table(
    engine: Engine, make_tenant: Callable[[], int], database_url: str, tmp_path: Path
) -> None:
    # It was left out ("no JSONB"): the one tenant whose labels now only the table knows.
    tenant = ready_tenant(engine, make_tenant)
    migrate.contract(engine, tenant_ids=[tenant])
    with engine.connect() as connection:
        labels = connection.execute(
            text(
                f"SELECT count(DISTINCT product_id) FROM {tenant_schema(tenant)}.product_images "
                "WHERE is_label"
            )
        ).scalar_one()
    assert labels > 0

    shown = backfill(database_url, "report", "labels", "--tenant", str(tenant), tmp=tmp_path)

    assert shown.returncode == 0, shown.stderr
    assert "contracted tenants: the table only" in shown.stdout
    row = next(
        line for line in shown.stdout.splitlines() if line.strip("│ ").startswith(str(tenant))
    )
    assert [cell.strip() for cell in row.strip("│").split("│")][3] == str(labels)
