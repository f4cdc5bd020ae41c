"""What the benchmarks share: a scratch database, and legacy products filled in SQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from app.core.database import make_engine, sqlalchemy_url
from app.seed.bulk import insert_legacy_products


@contextmanager
def scratch_database() -> Iterator[Engine]:
    """A new database on DATABASE_URL's server, dropped afterwards."""
    server = make_url(sqlalchemy_url(os.environ["DATABASE_URL"]))
    name = f"pim_bench_{uuid.uuid4().hex[:6]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(server.set(database=name).render_as_string(hide_password=False))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def create_users(engine: Engine, count: int) -> list[int]:
    """`count` users (the tenants, schemas not yet migrated); their ids in order."""
    with engine.begin() as connection:
        return list(
            connection.execute(
                text(
                    "INSERT INTO public.users (email) SELECT 'bench' || g || '@example.com' "
                    "FROM generate_series(1, :n) g ORDER BY g RETURNING id"
                ),
                {"n": count},
            ).scalars()
        )


def fill_products(engine: Engine, tenant: int, products: int, images: int) -> None:
    """Legacy products with `images` elements each; every fifth from pythonApiWOO."""
    insert_legacy_products(
        engine,
        tenant,
        products,
        images_each=images,
        base="https://cdn.example",
        created_at="2024-01-01T10:00:00Z",
        analyze=True,
    )
