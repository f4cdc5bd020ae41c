"""`seed_database` on real PostgreSQL: what it prints is what is in the database."""

from __future__ import annotations

import io

import pytest
from PIL import Image as PillowImage
from rich.console import Console
from sqlalchemy import Engine, text

from app.core.database import tenant_schema
from app.core.settings import Settings
from app.seed.run import SeedRefused, SeedSummary, seed_database
from app.storage.local import LocalStorage

SEED = 9001  # no other test uses it: the test database is shared by the session


def count(engine: Engine, tenants: tuple[int, ...], where: str) -> int:
    total = 0
    with engine.connect() as connection:
        for tenant in tenants:
            total += int(
                connection.execute(
                    text(f'SELECT count(*) FROM "{tenant_schema(tenant)}".products p WHERE {where}')
                ).scalar_one()
            )
    return total


@pytest.fixture(scope="module")
def seeded(
    engine: Engine, tmp_path_factory: pytest.TempPathFactory, database_url: str
) -> tuple[SeedSummary, LocalStorage, Settings]:
    media = tmp_path_factory.mktemp("media")
    settings = Settings(database_url=database_url, media_root=media, app_env="test")
    storage = LocalStorage(media, "http://testserver/media")
    summary = seed_database(
        settings,
        seed=SEED,
        tenants=3,
        products=240,
        labels=40,
        if_empty=False,
        console=Console(file=io.StringIO()),
        engine=engine,
        storage=storage,
    )
    return summary, storage, settings


def test_the_counts_it_prints_are_in_the_database(
    engine: Engine, seeded: tuple[SeedSummary, LocalStorage, Settings]
) -> None:
    summary, _, _ = seeded
    tenants = summary.tenant_ids
    assert len(tenants) == 3
    assert count(engine, tenants, "true") == summary.products == 240
    assert count(engine, tenants, "source = 'pythonApiWOO'") == summary.labelled_products == 40
    with engine.connect() as connection:
        jsonb_elements = sum(
            int(
                connection.execute(
                    text(
                        f"SELECT coalesce(sum(CASE jsonb_typeof(images) WHEN 'array' "
                        f"THEN jsonb_array_length(images) ELSE 1 END), 0) "
                        f'FROM "{tenant_schema(t)}".products'
                    )
                ).scalar_one()
            )
            for t in tenants
        )
    assert jsonb_elements == summary.images
    dirty = summary.dirty
    assert count(engine, tenants, "images = '[]'::jsonb") == dirty["empty_arrays"]
    assert count(engine, tenants, "jsonb_typeof(images) <> 'array'") == dirty["column_not_array"]
    assert (
        count(engine, tenants, "jsonb_path_exists(images, '$[*] ? (@.order.type() == \"string\")')")
        == dirty["order_as_string"]
    )
    assert (
        count(engine, tenants, "jsonb_path_exists(images, '$[*] ? (@.type() == \"string\")')")
        == dirty["element_not_object"]
    )
    assert (
        count(
            engine,
            tenants,
            "jsonb_path_exists(images, '$[*] ? (@.type() == \"object\" && !exists(@.url))')",
        )
        == dirty["element_without_url"]
    )
    assert (
        count(
            engine,
            tenants,
            "jsonb_typeof(images) = 'array' AND (SELECT count(*) <> count(DISTINCT e->>'url') "
            "FROM jsonb_array_elements(images) e WHERE e ? 'url')",
        )
        == dirty["duplicate_urls"]
    )


def test_every_stored_url_but_the_planned_missing_ones_is_a_real_picture(
    engine: Engine, seeded: tuple[SeedSummary, LocalStorage, Settings]
) -> None:
    summary, storage, _ = seeded
    missing = 0
    with engine.connect() as connection:
        for tenant in summary.tenant_ids:
            urls = connection.execute(
                text(
                    f"SELECT DISTINCT e->>'url' FROM \"{tenant_schema(tenant)}\".products p, "
                    "jsonb_array_elements(CASE jsonb_typeof(p.images) WHEN 'array' THEN p.images "
                    "ELSE '[]' END) e WHERE jsonb_typeof(e) = 'object' AND e ? 'url'"
                )
            ).scalars()
            for url in urls:
                key = storage.key_for_url(url)
                assert key is not None
                if not storage.exists(key):
                    missing += 1
                    continue
                with PillowImage.open(storage.root / key) as picture:
                    assert picture.format in ("JPEG", "PNG", "WEBP")
    assert missing == summary.dirty["missing_objects"]


def test_the_same_seed_twice_is_refused_and_if_empty_changes_nothing(
    engine: Engine, seeded: tuple[SeedSummary, LocalStorage, Settings]
) -> None:
    summary, storage, settings = seeded
    quiet = Console(file=io.StringIO())
    with pytest.raises(SeedRefused, match="--seed"):
        seed_database(
            settings,
            seed=SEED,
            tenants=3,
            products=240,
            labels=40,
            if_empty=False,
            console=quiet,
            engine=engine,
            storage=storage,
        )
    again = seed_database(
        settings,
        seed=SEED + 1,
        tenants=3,
        products=240,
        labels=40,
        if_empty=True,
        console=quiet,
        engine=engine,
        storage=storage,
    )
    assert again.created is False
    assert count(engine, summary.tenant_ids, "true") == 240
