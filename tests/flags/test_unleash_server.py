"""Against a real Unleash server (unleash-server 7.5.1 on loopback, its own fresh database):
`python -m flags push` creates the toggles through the Admin API, `flags enable read-table`
targets one tenant, and that tenant's API reads switch within the client's refresh interval
while another tenant's do not; `flags disable` moves it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.core.settings import PROJECT_ROOT, Settings
from app.main import create_app
from flags.admin_api import UnleashAdmin, UnleashAdminError
from flags.client import Toggle
from flags.toggle_file import DEFAULTS
from tests.api.test_read_switch import migrated_tenant
from tests.conftest import bearer
from tests.unleash_harness import UnleashServer, UnleashUnavailable, running_unleash

pytestmark = pytest.mark.xdist_group("unleash")

SWITCH_BOUND = 20.0  # generous: the client polls every second; this only bounds a hang


@pytest.fixture(scope="module")
def unleash(database_url: str) -> Iterator[UnleashServer]:
    try:
        with running_unleash(database_url) as server:
            yield server
    except UnleashUnavailable as exc:
        pytest.skip(f"no Unleash server on this machine: {exc}")


def flags_cli(
    database_url: str,
    server: UnleashServer,
    *args: str,
    admin_token: str | None = None,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flags", *args],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "UNLEASH_URL": server.api_url,
            "UNLEASH_API_TOKEN": server.client_token,
            "UNLEASH_ADMIN_TOKEN": admin_token or server.admin_token,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_path(client: TestClient, tenant: int, product: int) -> str:
    response = client.get(f"/api/products/{product}/images", headers=bearer(tenant))
    assert response.status_code == 200, response.text
    return response.headers["x-images-read-path"]


def eventually(check: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + SWITCH_BOUND
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def test_one_command_switches_one_tenant_through_a_real_unleash_and_back(
    unleash: UnleashServer,
    database_url: str,
    settings: Settings,
    engine: Engine,
    make_tenant: Callable[[], int],
    tmp_path: Path,
) -> None:
    target, target_product = migrated_tenant(engine, make_tenant, verify=True)
    other, other_product = migrated_tenant(engine, make_tenant, verify=True)
    unverified, _ = migrated_tenant(engine, make_tenant, verify=False)
    # This machine's local toggle file has a flip: push once sent it to the server.
    local = json.loads(DEFAULTS.read_text())
    for feature in local["features"]:
        if feature["name"] == Toggle.READ_TABLE.value:
            feature["strategies"][0]["constraints"][0]["values"] = [str(target)]
    flipped = tmp_path / "toggles.json"
    flipped.write_text(json.dumps(local))

    pushed = flags_cli(database_url, unleash, "push", FLAGS_FILE=str(flipped))
    assert pushed.returncode == 0, pushed.stderr
    assert "product-images.read-table: created" in pushed.stderr
    again = flags_cli(database_url, unleash, "push")
    assert "already in Unleash" in again.stderr, "push is idempotent"

    app = create_app(
        settings.model_copy(
            update={"unleash_url": unleash.api_url, "unleash_api_token": unleash.client_token}
        ),
        engine,
    )
    with TestClient(app) as client:
        assert app.state.services.flags.wait_until_ready(SWITCH_BOUND)
        assert read_path(client, target, target_product) == "jsonb"
        assert read_path(client, other, other_product) == "jsonb"

        refused = flags_cli(
            database_url, unleash, "enable", "read-table", "--tenant", str(unverified)
        )
        assert refused.returncode == 2 and "not verified" in refused.stderr

        moved = flags_cli(database_url, unleash, "enable", "read-table", "--tenant", str(target))
        assert moved.returncode == 0, moved.stderr
        assert f"tenants [{target}]" in moved.stderr

        assert eventually(lambda: read_path(client, target, target_product) == "table")
        assert read_path(client, other, other_product) == "jsonb"

        status = flags_cli(
            database_url, unleash, "status", "--tenant", str(target), "--tenant", str(other)
        )
        assert status.returncode == 0, status.stderr
        assert unleash.api_url in status.stdout
        lines = {
            line.split()[1]: line
            for line in status.stdout.splitlines()
            if "│" in line and line.split()[1].isdigit()
        }
        assert "live" in lines[str(target)] and "table" in lines[str(target)]
        assert "jsonb" in lines[str(other)]

        back = flags_cli(database_url, unleash, "disable", "read-table", "--tenant", str(target))
        assert back.returncode == 0, back.stderr
        assert eventually(lambda: read_path(client, target, target_product) == "jsonb")


def test_the_admin_api_client_against_the_real_server(
    unleash: UnleashServer, database_url: str
) -> None:
    assert flags_cli(database_url, unleash, "push").returncode == 0
    with UnleashAdmin(unleash.api_url, unleash.admin_token) as admin:
        assert admin.set_tenants(Toggle.SHADOW_COMPARE, add=[7, 3]) == [3, 7]
        assert admin.set_tenants(Toggle.SHADOW_COMPARE, add=[5], remove=[3]) == [5, 7]
        assert admin.tenants(Toggle.SHADOW_COMPARE) == [5, 7]
        assert admin.set_tenants(Toggle.SHADOW_COMPARE, remove=[5, 7]) == []
        assert admin.is_enabled(Toggle.DUAL_WRITE) is True

    paused = flags_cli(database_url, unleash, "enable", "backfill-pause")
    assert paused.returncode == 0, paused.stderr
    with UnleashAdmin(unleash.api_url, unleash.admin_token) as admin:
        assert admin.is_enabled(Toggle.BACKFILL_PAUSE) is True
    assert flags_cli(database_url, unleash, "disable", "backfill-pause").returncode == 0

    wrong = flags_cli(database_url, unleash, "enable", "backfill-pause", admin_token="*:*.wrong")
    assert wrong.returncode == 1 and "refused the admin token" in wrong.stderr
    with (
        UnleashAdmin(unleash.api_url, unleash.admin_token) as admin,
        pytest.raises(UnleashAdminError, match="does not exist"),
    ):
        admin.tenants("product-images.no-such-toggle")
