"""The console's sessions and pages against an attacker: the cookie is a server-side session
(not the admin token) that sign-out ends; sign-in is rate-limited per address; `?msg=` shows
only what the server signed; refusal pages carry the same frame and CSP headers as the rest."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.core.settings import Settings
from app.main import create_app
from tests.console.test_console import admin_token, sign_in
from tests.flags.test_client import write_toggles


@pytest.fixture
def console(settings: Settings, engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    toggles = tmp_path / "toggles.json"
    write_toggles(toggles, [])
    app = create_app(settings.model_copy(update={"flags_file": toggles}), engine)
    with TestClient(app, base_url="http://testserver") as client:
        yield client


def assert_secured(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "default-src 'self'" in headers["content-security-policy"]


def test_the_cookie_is_a_session_not_the_admin_token(console: TestClient) -> None:
    token = admin_token()
    sign_in(console, token)
    cookie = console.cookies.get("pim_console")
    assert cookie and cookie != token and token not in cookie
    other = TestClient(console.app, base_url="http://testserver")
    other.cookies.set("pim_console", token, path="/admin")  # the token itself opens nothing
    assert other.get("/admin", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session_on_the_server(
    console: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    csrf = sign_in(console)
    cookie = console.cookies.get("pim_console")
    assert console.get("/admin", follow_redirects=False).status_code == 200
    out = console.post("/admin/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    logouts = [str(r.msg) for r in caplog.records if "console.logout" in str(r.msg)]
    assert logouts and "admin token" in logouts[0], "who signed out is logged"
    replay = TestClient(console.app, base_url="http://testserver")
    replay.cookies.set("pim_console", cookie, path="/admin")  # a copy of the old cookie
    assert replay.get("/admin", follow_redirects=False).status_code == 303
    refused = replay.post("/admin/actions/pause", data={"csrf": csrf, "paused": "on"})
    assert refused.status_code == 403


def test_sign_in_is_limited_to_ten_failures_a_minute_per_address(console: TestClient) -> None:
    for _ in range(10):
        failed = console.post("/admin/login", data={"token": "not-a-token"})
        assert failed.status_code == 200 and 'id="error"' in failed.text
    blocked = console.post("/admin/login", data={"token": admin_token()}, follow_redirects=False)
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    assert "set-cookie" not in blocked.headers, "not even a good token while blocked"
    assert_secured(blocked)
    elsewhere = TestClient(console.app, base_url="http://testserver", client=("10.1.2.3", 4000))
    assert (
        elsewhere.post(
            "/admin/login", data={"token": admin_token()}, follow_redirects=False
        ).status_code
        == 303
    )


@pytest.mark.parametrize(
    "msg",
    [
        "backfill queued for 1 tenant(s)",
        "refused: your session expired, sign in again at https://evil.example/admin",
        "<script>alert(1)</script>",
    ],
)
def test_a_message_in_the_url_is_shown_only_when_the_server_signed_it(
    console: TestClient, msg: str
) -> None:
    sign_in(console)
    for query in (f"?msg={quote(msg)}", f"?msg={quote(msg)}&sig={'0' * 64}"):
        page = console.get(f"/admin/tenants{query}")
        assert page.status_code == 200
        assert 'id="msg"' not in page.text and "evil.example" not in page.text


def test_an_action_message_is_signed_and_shown(console: TestClient) -> None:
    csrf = sign_in(console)
    done = console.post(
        "/admin/actions/pause",
        data={"csrf": csrf, "paused": "off"},
        headers={"referer": "http://testserver/admin/tenants"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and "sig=" in done.headers["location"]
    page = console.get(done.headers["location"])
    match = re.search(r'id="msg">([^<]*)<', page.text)
    assert match and match.group(1) == "backfill-pause: off"
    other_session = TestClient(console.app, base_url="http://testserver")
    sign_in(other_session)
    assert 'id="msg"' not in other_session.get(done.headers["location"]).text


def test_refusal_pages_carry_the_frame_and_csp_headers(console: TestClient) -> None:
    no_session = console.post("/admin/actions/pause", data={"csrf": "x", "paused": "on"})
    assert no_session.status_code == 403
    assert_secured(no_session)
    sign_in(console)
    bad_csrf = console.post("/admin/actions/pause", data={"csrf": "0" * 64, "paused": "on"})
    assert bad_csrf.status_code == 403
    assert_secured(bad_csrf)
    missing = console.get("/admin/tenants/999999")
    assert missing.status_code == 404
    assert_secured(missing)
    assert_secured(console.get("/admin"))


def test_a_session_is_seen_by_every_worker_and_sign_out_ends_it_for_all(
    console: TestClient, engine: Engine
) -> None:
    csrf = sign_in(console)
    cookie = console.cookies.get("pim_console")
    # Another worker process of the same deployment: its own app, the same DATA_DIR.
    same_settings = console.app.state.services.settings  # type: ignore[attr-defined]
    with TestClient(create_app(same_settings, engine), base_url="http://testserver") as other:
        other.cookies.set("pim_console", cookie, path="/admin")
        assert other.get("/admin", follow_redirects=False).status_code == 200
        console.post("/admin/logout", data={"csrf": csrf})
        assert other.get("/admin", follow_redirects=False).status_code == 303


def test_a_non_ascii_csrf_token_is_refused_not_a_server_error(console: TestClient) -> None:
    sign_in(console)
    response = console.post("/admin/actions/pause", data={"csrf": "é" * 64, "paused": "on"})
    assert response.status_code == 403
