"""What the app shows anonymous callers: `/media` never sniffed into HTML, `/readyz` without
the driver's error, `/metrics` and the API docs closed in production unless asked for."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine

from app.core.settings import Settings
from app.main import create_app
from tests.api.test_logging import production_settings
from tests.conftest import bearer

INTERNAL = ["/metrics", "/docs", "/redoc", "/openapi.json"]


def test_media_is_served_with_nosniff(client: TestClient, settings: Settings) -> None:
    assert settings.media_root is not None
    (settings.media_root / "t1").mkdir(parents=True)
    (settings.media_root / "t1" / "photo.jpg").write_bytes(b"<html><script>alert(1)</script>")
    response = client.get("/media/t1/photo.jpg")
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"


def test_readyz_tells_an_anonymous_caller_no_driver_error(settings: Settings) -> None:
    down = create_engine("postgresql+psycopg://nobody:hunter2@127.0.0.1:1/nowhere")
    with TestClient(create_app(settings, down)) as client:
        anonymous = client.get("/readyz")
        operator = client.get("/readyz", headers=bearer(None, admin=True))
        tenant = client.get("/readyz", headers=bearer(1))
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "unavailable"}
    assert tenant.json() == {"status": "unavailable"}
    assert operator.status_code == 503 and "127.0.0.1" in operator.json()["reason"]
    down.dispose()


def test_production_closes_metrics_and_the_api_docs(settings: Settings, engine: Engine) -> None:
    with TestClient(create_app(production_settings(settings), engine)) as client:
        for path in INTERNAL:
            assert client.get(path).status_code == 404, path
        assert client.get("/healthz").status_code == 200
    opened = production_settings(settings, serve_api_docs=True, serve_metrics=True)
    with TestClient(create_app(opened, engine)) as client:
        for path in INTERNAL:
            assert client.get(path).status_code == 200, path


@pytest.mark.parametrize("path", INTERNAL)
def test_outside_production_metrics_and_the_api_docs_are_open(
    client: TestClient, path: str
) -> None:
    assert client.get(path).status_code == 200
