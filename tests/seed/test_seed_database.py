"""`seed_database` on real PostgreSQL: what it prints is what is in the database, in SQL."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console
from sqlalchemy import Engine, func, select, text

from app.core.database import quoted_schema, tenant_schema
from app.core.settings import Settings
from app.models import User
from app.seed.pictures import pool_specs, render
from app.seed.run import SeedRefused, SeedSummary, seed_database
from app.storage.local import LocalStorage

SEED = 90_417  # no other test uses it: the test database is shared by the whole session
SCALE = {"tenants": 3, "products": 240, "labels": 40}
BASE_URL = "http://testserver/media"
IS_ARRAY = "jsonb_typeof(p.images) = 'array'"
# Per dirty case, a predicate on `p` (a product row) that holds on exactly those products.
DIRTY_CASE_SQL = {
    "empty_arrays": "p.images = '[]'::jsonb",
    "column_not_array": "jsonb_typeof(p.images) <> 'array'",
    "order_as_string": f"""{IS_ARRAY}
        AND jsonb_path_exists(p.images, '$[*] ? (@.order.type() == "string")')""",
    "element_not_object": f"""{IS_ARRAY}
        AND jsonb_path_exists(p.images, '$[*] ? (@.type() != "object")')""",
    "element_without_url": f"""{IS_ARRAY}
        AND jsonb_path_exists(p.images, '$[*] ? (@.type() == "object" && !exists(@.url))')""",
    "missing_created_at": f"""{IS_ARRAY}
        AND jsonb_path_exists(
            p.images, '$[*] ? (@.type() == "object" && exists(@.url) && !exists(@.created_at))')""",
    "duplicate_urls": f"""{IS_ARRAY} AND EXISTS (
        SELECT FROM jsonb_array_elements(p.images) e
        WHERE jsonb_typeof(e) = 'object' AND e ? 'url'
        GROUP BY e->>'url' HAVING count(*) > 1)""",
    "order_duplicates": f"""{IS_ARRAY} AND EXISTS (
        SELECT FROM jsonb_array_elements(p.images) e
        WHERE jsonb_typeof(e) = 'object'
        GROUP BY (e->>'order')::numeric HAVING count(*) > 1)""",
    # Distinct orders that are not exactly 0..n-1.
    "order_gaps": f"""{IS_ARRAY} AND p.images <> '[]'::jsonb AND (
        SELECT count(DISTINCT (e->>'order')::numeric) = count(*)
           AND (min((e->>'order')::numeric) <> 0 OR max((e->>'order')::numeric) <> count(*) - 1)
        FROM jsonb_array_elements(p.images) e WHERE jsonb_typeof(e) = 'object')""",
}
# The url of each legacy product's last element by (order as a number, position in the array).
LAST_BY_THE_RULE = """
    SELECT (SELECT e->>'url'
            FROM jsonb_array_elements(p.images) WITH ORDINALITY AS x(e, position)
            WHERE jsonb_typeof(e) = 'object' AND e ? 'url'
            ORDER BY (e->>'order')::numeric DESC, position DESC
            LIMIT 1)
    FROM {schema}.products p
    WHERE p.source = 'pythonApiWOO'
"""
OBJECT_URLS = """
    SELECT DISTINCT e->>'url'
    FROM {schema}.products p, jsonb_array_elements(p.images) e
    WHERE jsonb_typeof(p.images) = 'array' AND jsonb_typeof(e) = 'object' AND e ? 'url'
"""


def scalar_sum(engine: Engine, tenants: Iterable[int], sql: str) -> int:
    """The sum over tenants of a scalar query naming `{schema}`."""
    with engine.connect() as connection:
        return sum(
            int(connection.execute(text(sql.format(schema=schema(t)))).scalar_one() or 0)
            for t in tenants
        )


def rows(engine: Engine, tenants: Iterable[int], sql: str) -> list[str]:
    with engine.connect() as connection:
        return [
            value
            for t in tenants
            for value in connection.execute(text(sql.format(schema=schema(t)))).scalars()
        ]


def schema(tenant_id: int) -> str:
    return quoted_schema(tenant_schema(tenant_id))


def count_products(engine: Engine, tenants: Iterable[int], where: str = "true") -> int:
    return scalar_sum(engine, tenants, f"SELECT count(*) FROM {{schema}}.products p WHERE {where}")


def printed_table(output: str) -> dict[str, str]:
    """The summary table's rows as {first cell: second cell}."""
    table = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if len(cells) == 2 and cells[0]:
            table[cells[0]] = cells[1]
    return table


def printed_number(table: dict[str, str], row: str) -> int:
    return int(table[row].split()[0].replace(",", ""))


@pytest.fixture(scope="module")
def test_settings(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Settings:
    """Like the `settings` fixture, for a module: its own media folder and a test secret."""
    root = tmp_path_factory.mktemp("seed")
    return Settings(
        app_env="test",
        database_url=database_url,
        data_dir=root / "data",
        media_root=root / "media",
        media_base_url=BASE_URL,
        jwt_secret="test-secret-0123456789-0123456789-abcdef",
        log_format="console",
        log_level="WARNING",
    )


@pytest.fixture(scope="module")
def storage(test_settings: Settings) -> LocalStorage:
    assert test_settings.media_root is not None
    return LocalStorage(test_settings.media_root, BASE_URL)


@pytest.fixture(scope="module")
def seeded(
    engine: Engine, test_settings: Settings, storage: LocalStorage
) -> tuple[SeedSummary, str]:
    output = io.StringIO()
    summary = seed_database(
        test_settings,
        seed=SEED,
        if_empty=False,
        console=Console(file=output, width=160),
        engine=engine,
        storage=storage,
        **SCALE,
    )
    return summary, output.getvalue()


def test_what_it_prints_is_what_the_database_holds(
    engine: Engine, seeded: tuple[SeedSummary, str]
) -> None:
    summary, output = seeded
    table = printed_table(output)
    tenants = summary.tenant_ids
    assert len(tenants) == summary.tenants == printed_number(table, "tenants") == 3
    assert summary.first_tenant_id == tenants[0]
    with engine.connect() as connection:
        emails = connection.execute(
            select(User.email).where(User.id.in_(tenants)).order_by(User.id)
        ).scalars()
        assert list(emails) == [f"seed{SEED}-shop{i}@example.com" for i in range(3)]
    products = count_products(engine, tenants)
    assert products == summary.products == printed_number(table, "products") == 240
    legacy = count_products(engine, tenants, "p.source = 'pythonApiWOO'")
    assert legacy == summary.labelled_products == 40
    assert legacy == printed_number(table, "pythonApiWOO products with a label last")
    images = scalar_sum(
        engine,
        tenants,
        f"SELECT sum(jsonb_array_length(p.images)) FROM {{schema}}.products p WHERE {IS_ARRAY}",
    )
    assert images == summary.images == printed_number(table, "images (JSONB array elements)")
    for case, predicate in DIRTY_CASE_SQL.items():
        in_database = count_products(engine, tenants, predicate)
        assert in_database == summary.dirty[case] >= 1, case
        assert printed_number(table, f"dirty: {case}") == in_database, case
    sample = scalar_sum(engine, tenants[:1], "SELECT min(id) FROM {schema}.products")
    assert summary.sample_product_id == sample


def test_every_legacy_products_last_image_by_the_rule_is_a_label_picture(
    engine: Engine, seeded: tuple[SeedSummary, str], storage: LocalStorage
) -> None:
    summary, _ = seeded
    label_bytes = {render(spec).data for spec in pool_specs(SEED)[1]}
    last_urls = rows(engine, summary.tenant_ids, LAST_BY_THE_RULE)
    assert len(last_urls) == 40
    for url in last_urls:
        key = storage.key_for_url(url)
        assert key is not None and storage.get(key) in label_bytes


def test_every_url_but_the_planned_missing_ones_is_a_picture_pillow_opens(
    engine: Engine, seeded: tuple[SeedSummary, str], storage: LocalStorage
) -> None:
    summary, output = seeded
    missing = 0
    urls = rows(engine, summary.tenant_ids, OBJECT_URLS)
    assert len(urls) > 500
    for url in urls:
        key = storage.key_for_url(url)
        assert key is not None
        if not storage.exists(key):
            missing += 1
            continue
        with Image.open(storage.root / key) as picture:
            assert picture.format in ("JPEG", "PNG", "WEBP")
            assert (
                Path(key).suffix == {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}[picture.format]
            )
    assert missing == summary.dirty["missing_objects"]
    stored = sum(
        1 for path in storage.root.rglob("*") if path.is_file() and ".blobs" not in path.parts
    )
    assert stored == summary.stored_objects
    assert printed_number(printed_table(output), "stored objects") == stored


def test_the_same_seed_again_is_refused_and_changes_nothing(
    engine: Engine, seeded: tuple[SeedSummary, str], test_settings: Settings, storage: LocalStorage
) -> None:
    summary, _ = seeded
    with engine.connect() as connection:
        users_before = connection.execute(select(func.count()).select_from(User)).scalar_one()
    with pytest.raises(SeedRefused, match="--seed"):
        seed_database(
            test_settings,
            seed=SEED,
            if_empty=False,
            console=Console(file=io.StringIO()),
            engine=engine,
            storage=storage,
            **SCALE,
        )
    with engine.connect() as connection:
        assert (
            connection.execute(select(func.count()).select_from(User)).scalar_one() == users_before
        )
    assert count_products(engine, summary.tenant_ids) == 240


def test_if_empty_leaves_a_database_with_tenants_alone(
    engine: Engine, seeded: tuple[SeedSummary, str], test_settings: Settings, storage: LocalStorage
) -> None:
    summary, _ = seeded
    with engine.connect() as connection:
        users_before = connection.execute(select(func.count()).select_from(User)).scalar_one()
        first_user = connection.execute(select(func.min(User.id))).scalar_one()
    again = seed_database(
        test_settings,
        seed=SEED + 1,
        if_empty=True,
        console=Console(file=io.StringIO()),
        engine=engine,
        storage=storage,
        **SCALE,
    )
    assert again.created is False
    assert again.first_tenant_id == first_user
    expected_sample = scalar_sum(engine, [first_user], "SELECT min(id) FROM {schema}.products")
    assert again.sample_product_id == expected_sample
    with engine.connect() as connection:
        assert (
            connection.execute(select(func.count()).select_from(User)).scalar_one() == users_before
        )
        taken = connection.execute(
            select(func.count()).select_from(User).where(User.email.like(f"seed{SEED + 1}-%"))
        ).scalar_one()
    assert taken == 0
    assert count_products(engine, summary.tenant_ids) == 240


def test_an_unmigrated_database_is_refused_with_the_step_to_take(
    tmp_path: Path, database_url: str
) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from app.core.database import make_engine

    server = make_url(database_url)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"{server.database}_empty"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    empty = make_engine(server.set(database=name).render_as_string(hide_password=False))
    try:
        with pytest.raises(SeedRefused, match="not migrated: run `python -m app migrate`"):
            seed_database(
                Settings(data_dir=tmp_path, database_url=database_url),
                seed=1,
                tenants=1,
                products=1,
                labels=0,
                if_empty=False,
                console=Console(file=io.StringIO()),
                engine=empty,
            )
    finally:
        empty.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
