"""What the benchmarks share: a scratch database, and legacy products filled in SQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from app.core.database import make_engine, sqlalchemy_url
from app.core.settings import PROJECT_ROOT
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


@dataclass(frozen=True)
class ServedApi:
    """The real app serving a scratch database on a loopback port."""

    url: str
    env: dict[str, str]  # its environment, for other processes on the same database
    process: subprocess.Popen[bytes]


@contextmanager
def serve_api(engine: Engine, *, port: int, toggles: Path, media_root: Path) -> Iterator[ServedApi]:
    """`python -m app serve` on 127.0.0.1:`port` over `engine`'s database, its toggles read
    from the file `toggles`, its media under `media_root`; stopped afterwards."""
    env = {
        **os.environ,
        "DATABASE_URL": engine.url.render_as_string(hide_password=False).replace(
            "postgresql+psycopg", "postgresql"
        ),
        "FLAGS_FILE": str(toggles),
        "LOG_LEVEL": "WARNING",
        "MEDIA_BASE_URL": f"http://127.0.0.1:{port}/media",
        "MEDIA_ROOT": str(media_root),
        "MARKETPLACE_ALLOW_HTTP": "true",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _is_up(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start on {url} (exit {process.poll()})")
            time.sleep(0.2)
        yield ServedApi(url, env, process)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _is_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz").status_code == 200
    except httpx.HTTPError:
        return False
