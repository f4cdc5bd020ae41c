"""Logs: JSON lines in production format, the request id and the tenant on every event."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.core.settings import Settings
from app.main import create_app
from tests.conftest import bearer
from tests.images_db import insert_legacy_product


def test_every_event_of_a_request_carries_its_request_id_and_tenant(
    settings: Settings, engine: Engine, tenant: int, capsys: pytest.CaptureFixture[str]
) -> None:
    product = insert_legacy_product(engine, tenant, [{"url": "http://testserver/media/a.jpg"}])
    json_settings = settings.model_copy(update={"log_format": "json", "log_level": "INFO"})
    with TestClient(create_app(json_settings, engine)) as client:
        capsys.readouterr()
        response = client.post(
            f"/api/products/{product}/images",
            json={"url": "http://testserver/media/b.jpg"},
            headers={**bearer(tenant), "X-Request-ID": "req-42"},
        )
    assert response.status_code == 201
    events = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    mine = [event for event in events if event.get("request_id") == "req-42"]
    assert {"images.written", "request"} <= {event["event"] for event in mine}
    assert all(event.get("tenant") == tenant for event in mine)
    access = next(event for event in mine if event["event"] == "request")
    assert access["status"] == 201
    assert access["path"] == f"/api/products/{product}/images"
