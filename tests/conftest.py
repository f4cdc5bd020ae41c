"""Fixtures on real PostgreSQL: a fresh test database built by the migrations themselves,
and one new tenant per test, so tests run in any order and share no mutable state."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from app.core import migrate
from app.core.database import embedded_database_url, make_engine, sqlalchemy_url
from app.core.security import issue_token, now_utc
from app.core.settings import Settings
from app.main import create_app
from app.services.tenant_service import create_tenant

TEST_SECRET = "test-secret-0123456789-0123456789-abcdef"

# No timing in tests (shared machines drift): no per-example deadline, no "too slow" check.
hypothesis_settings.register_profile(
    "project", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("project")


def _server_url(tmp_root: Path) -> str:
    raw = os.environ.get("DATABASE_URL") or embedded_database_url(tmp_root)
    return sqlalchemy_url(raw)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A brand-new database for this test session (per xdist worker), dropped at the end."""
    server = make_url(_server_url(tmp_path_factory.mktemp("pg")))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"pim_test_{worker}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """The test database's engine, with `public` migrated to head."""
    engine = make_engine(database_url, pool_size=5)
    migrate.upgrade(engine, lock_retries=0)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings for one test: its own media folder and a test secret."""
    return Settings(
        app_env="test",
        database_url=database_url,
        data_dir=tmp_path / "data",
        media_root=tmp_path / "media",
        media_base_url="http://testserver/media",
        jwt_secret=TEST_SECRET,
        log_format="console",
        log_level="WARNING",
    )


@pytest.fixture
def make_tenant(engine: Engine) -> Callable[[], int]:
    """Create a fresh tenant (user + migrated schema) and return its id."""

    def make() -> int:
        return create_tenant(engine, email=f"t-{uuid.uuid4().hex}@example.com").id

    return make


@pytest.fixture
def tenant(make_tenant: Callable[[], int]) -> int:
    """A fresh tenant for this test."""
    return make_tenant()


def bearer(
    user_id: int | None, *, admin: bool = False, secret: str = TEST_SECRET
) -> dict[str, str]:
    """Authorization header for a user's (or an operator's) token."""
    value = issue_token(
        secret, user_id=user_id, is_admin=admin, ttl=timedelta(hours=1), now=now_utc()
    )
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    """The app over HTTP (in-process), on the test database."""
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client


@pytest.fixture
def auth(tenant: int) -> dict[str, str]:
    """Headers for the test's tenant."""
    return bearer(tenant)


AuthFor = Callable[[int], dict[str, str]]
