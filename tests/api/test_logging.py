"""Logs: JSON lines in production format, the request id and the tenant on every event; in
production JSON by default, no locals in tracebacks, credentials redacted everywhere."""

from __future__ import annotations

import json
import logging
from typing import Literal

import httpx
import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.core.logging import configure_logging
from app.core.settings import Settings
from app.main import create_app
from app.services import product_service
from tests.conftest import bearer
from tests.console.browser import live_server
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


PRODUCTION_SECRET = "kX9#vN2m!pL5@qR7$tW1^yB4&cF6*hJ0-logging"


def production_settings(settings: Settings, **overrides: object) -> Settings:
    """The test's settings as APP_ENV=production reads them (production's own defaults)."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        app_env="production",
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        media_root=settings.media_root,
        media_base_url=settings.media_base_url,
        jwt_secret=PRODUCTION_SECRET,
        log_level="INFO",
        **overrides,
    )


def test_a_server_error_in_production_logs_json_without_locals_or_credentials(
    settings: Settings,
    engine: Engine,
    tenant: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = bearer(tenant, secret=PRODUCTION_SECRET)["Authorization"]
    session_cookie = "pim_console=Session-Cookie-Value-0123456789"

    def broken(*_args: object, **_kwargs: object) -> None:
        local_secret = f"{token} {session_cookie}"  # what a traceback with locals would print
        if local_secret:
            raise RuntimeError("the database exploded")

    monkeypatch.setattr(product_service, "list_products", broken)
    app = create_app(production_settings(settings), engine)
    with live_server(app) as url:  # served as `python -m app serve` serves (log_config=None)
        capsys.readouterr()
        response = httpx.get(
            f"{url}/api/products",
            headers={"Authorization": token, "Cookie": session_cookie, "X-Request-ID": "boom-1"},
        )
    assert response.status_code == 500
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is one JSON event
    failure = next(e for e in events if "Exception in ASGI application" in e["event"])
    assert "RuntimeError: the database exploded" in failure["exception"]
    assert token.split()[1] not in err and "Session-Cookie-Value" not in err
    assert "local_secret" not in err, "no locals in a traceback"


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_authorization_and_cookies_are_redacted_from_every_event(
    log_format: Literal["json", "console"], capsys: pytest.CaptureFixture[str]
) -> None:
    jwt_value = bearer(1)["Authorization"].split()[1]
    configure_logging(log_format, "INFO")
    log = structlog.get_logger("test.redaction")
    log.info(
        "request.headers",
        headers={"Authorization": f"Bearer {jwt_value}", "Cookie": "pim_console=abcdef123456"},
        raw=[(b"authorization", b"Basic dXNlcjpwYXNz"), (b"cookie", b"pim_console=abcdef123456")],
        note=f"retrying with Bearer {jwt_value}",
    )
    logging.getLogger("uvicorn.error").warning("token %s in a foreign log", jwt_value)
    try:
        raise ValueError(f"bad token {jwt_value}")
    except ValueError:
        log.exception("failed")
    err = capsys.readouterr().err
    assert jwt_value not in err
    assert "dXNlcjpwYXNz" not in err and "abcdef123456" not in err
    assert err.count("[redacted]") >= 5
