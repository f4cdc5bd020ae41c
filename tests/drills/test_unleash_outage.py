"""Drill: Unleash down or slow. The app never waits on Unleash.

- A real Unleash server (tests/unleash_harness.py) killed with SIGKILL while the app runs:
  requests keep the last-known flags (a tenant switched to the table stays on it).
- A process started while Unleash is down serves the safe defaults (JSONB reads,
  dual-write on), and its writes keep both representations equal.
- A "slow" Unleash (a loopback port that accepts connections and never answers) or a
  refused port: start-up, every request and shutdown are unaffected (all bounded).
Every request is bounded by the client's timeout: a hang fails the drill."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import Engine

from app.core.settings import Settings
from app.main import create_app
from tests.api.test_read_switch import BASE, migrated_tenant
from tests.conftest import bearer
from tests.drills.support import HANG_BOUND, free_loopback_port, live_server
from tests.flags.test_unleash_server import flags_cli
from tests.images_db import assert_representations_equal
from tests.unleash_harness import UnleashServer, UnleashUnavailable, running_unleash

SWITCH_BOUND = 20.0
OUTAGE_SECONDS = 3.0  # several missed polls (the client polls every second)


def eventually(check: Callable[[], bool], bound: float = SWITCH_BOUND) -> bool:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


def read_path(http: httpx.Client, tenant: int, product: int) -> str:
    response = http.get(f"/api/products/{product}/images", headers=bearer(tenant))
    assert response.status_code == 200, response.text
    return response.headers["x-images-read-path"]


def add_image(http: httpx.Client, tenant: int, product: int, name: str) -> None:
    response = http.post(
        f"/api/products/{product}/images",
        json={"url": f"{BASE}/{name}.jpg"},
        headers=bearer(tenant),
    )
    assert response.status_code == 201, response.text


@pytest.fixture
def unleash(database_url: str) -> Iterator[UnleashServer]:
    try:
        with running_unleash(database_url) as server:
            yield server
    except UnleashUnavailable as exc:
        pytest.skip(f"no Unleash server on this machine: {exc}")


@pytest.mark.drill
@pytest.mark.xdist_group("unleash")
def test_unleash_killed_keeps_last_known_flags_and_a_new_process_starts_on_defaults(
    unleash: UnleashServer,
    database_url: str,
    settings: Settings,
    engine: Engine,
    make_tenant: Callable[[], int],
) -> None:
    tenant, product = migrated_tenant(engine, make_tenant, verify=True)
    assert flags_cli(database_url, unleash, "push").returncode == 0
    enabled = flags_cli(database_url, unleash, "enable", "read-table", "--tenant", str(tenant))
    assert enabled.returncode == 0, enabled.stderr
    online = settings.model_copy(
        update={"unleash_url": unleash.api_url, "unleash_api_token": unleash.client_token}
    )

    app = create_app(online, engine)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=HANG_BOUND) as http:
        assert app.state.services.flags.wait_until_ready(SWITCH_BOUND)
        assert eventually(lambda: read_path(http, tenant, product) == "table")

        os.killpg(unleash.pid, signal.SIGKILL)  # the whole node process group, no goodbye
        assert eventually(lambda: not _accepts(unleash.url)), "Unleash is really gone"
        deadline = time.monotonic() + OUTAGE_SECONDS
        while time.monotonic() < deadline:
            assert read_path(http, tenant, product) == "table", "last-known flags"
            time.sleep(0.2)
        add_image(http, tenant, product, "during-outage")
        assert http.get("/readyz").status_code == 200, "Unleash is not a readiness dependency"

        # A process that starts while Unleash is down: safe defaults at once.
        cold = create_app(online, engine)
        with (
            live_server(cold) as cold_url,
            httpx.Client(base_url=cold_url, timeout=HANG_BOUND) as cold_http,
        ):
            assert read_path(cold_http, tenant, product) == "jsonb", "default: JSONB reads"
            add_image(cold_http, tenant, product, "cold-start")  # dual-write on by default
            assert cold.state.services.flags.wait_until_ready(0.5) is False

    assert_representations_equal(engine, tenant, product)


def _accepts(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


class SilentServer:
    """A loopback TCP server that accepts every connection and never says a word."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for connection in self.held:
            connection.close()
        self.listener.close()


@pytest.mark.parametrize("kind", ["silent", "refused"])
def test_a_silent_or_refusing_unleash_blocks_neither_start_up_nor_requests(
    settings: Settings, engine: Engine, make_tenant: Callable[[], int], kind: str
) -> None:
    tenant, product = migrated_tenant(engine, make_tenant, verify=True)
    silent = SilentServer() if kind == "silent" else None
    port = silent.port if silent is not None else free_loopback_port()
    try:
        app = create_app(
            settings.model_copy(
                update={"unleash_url": f"http://127.0.0.1:{port}/api", "unleash_api_token": "x"}
            ),
            engine,
        )
        # live_server bounds start-up and shutdown; the client bounds every request.
        with live_server(app) as url, httpx.Client(base_url=url, timeout=HANG_BOUND) as http:
            for _ in range(5):
                assert read_path(http, tenant, product) == "jsonb"
            add_image(http, tenant, product, "while-unleash-is-silent")
            assert http.get("/readyz").status_code == 200
        if silent is not None:
            assert silent.held, "the client did connect, and got no answer"
    finally:
        if silent is not None:
            silent.close()
    assert_representations_equal(engine, tenant, product)
