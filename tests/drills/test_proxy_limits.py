"""The deployment's proxy (deploy/nginx.conf, docker-compose's `proxy`) holds the app's own
body limits (issue 19, item 1): the file states the same numbers as the settings' defaults,
and a real nginx running that file in front of the app refuses what the app would refuse,
before forwarding it. Needs Debian's nginx (`apt-get install nginx-light`; `.ci/run` installs
it): skipped without it, except in CI."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image
from sqlalchemy import Engine

from app.api.body_limits import UPLOAD_ENVELOPE_BYTES
from app.core.settings import PROJECT_ROOT, Settings
from app.main import create_app
from tests.conftest import bearer
from tests.drills.support import START_BOUND, free_loopback_port, live_server
from tests.images_db import insert_legacy_product

NGINX_CONF = PROJECT_ROOT / "deploy" / "nginx.conf"
DEFAULTS = Settings.model_fields


def nginx_size(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmM]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit.lower()]


def body_limits(conf: str) -> dict[str, int]:
    """`client_max_body_size` by location ("server" for the server's own)."""
    limits: dict[str, int] = {}
    location = "server"
    for line in conf.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("location"):
            location = line.removeprefix("location").rstrip("{").strip()
        elif line == "}":
            location = "server"
        elif line.startswith("client_max_body_size"):
            limits[location] = nginx_size(line.split()[1].rstrip(";"))
    return limits


def test_the_proxy_states_the_apps_limits() -> None:
    limits = body_limits(NGINX_CONF.read_text())
    upload = DEFAULTS["max_upload_bytes"].default + UPLOAD_ENVELOPE_BYTES
    assert limits == {
        "server": DEFAULTS["max_form_body_bytes"].default,
        "~ ^/api/products/[^/]+/images/upload/?$": upload,
        "/api/": DEFAULTS["max_json_body_bytes"].default,
    }


def test_compose_publishes_the_proxy_not_the_api() -> None:
    compose = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "ports" not in services["api"]
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in services["proxy"]["volumes"]
    assert any(port.endswith(":8000:8000") for port in services["proxy"]["ports"])


@pytest.fixture
def nginx_in_front(settings: Settings, engine: Engine, tmp_path: Path) -> Iterator[str]:
    """deploy/nginx.conf, pointed at the app served on loopback; yield the proxy's URL."""
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing in CI (.ci/run installs nginx-light)")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    with live_server(create_app(settings, engine)) as app_url:
        port = free_loopback_port()
        conf = NGINX_CONF.read_text()
        conf = conf.replace("server api:8000;", f"server {app_url.removeprefix('http://')};")
        conf = conf.replace("listen 8000;", f"listen 127.0.0.1:{port};")
        conf = conf.replace("/tmp/nginx", str(tmp_path / "nginx"))  # noqa: S108 (rewritten)
        if os.geteuid() == 0:  # workers would run as nobody, who cannot enter tmp_path
            conf = "user root;\n" + conf
        conf_file = tmp_path / "nginx.conf"
        conf_file.write_text(conf)
        process = subprocess.Popen(
            [binary, "-c", str(conf_file), "-p", str(tmp_path), "-g", "daemon off;"],
            stderr=subprocess.PIPE,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_BOUND
        try:
            while True:
                try:
                    httpx.get(f"{url}/healthz", timeout=2)
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"nginx did not start: {process.stderr.read().decode()[-2000:]}"  # type: ignore[union-attr]
                        ) from None
                    time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=START_BOUND)


def from_proxy(response: httpx.Response) -> bool:
    """nginx's own refusal (an HTML page), not the app's JSON."""
    return response.headers.get("content-type", "").startswith("text/html")


def test_nginx_with_the_deployed_file_refuses_what_the_app_would(
    nginx_in_front: str, settings: Settings, engine: Engine, tenant: int
) -> None:
    product = insert_legacy_product(engine, tenant, [])
    token = bearer(tenant)
    upload = f"{nginx_in_front}/api/products/{product}/images/upload"
    picture = io.BytesIO()
    Image.new("RGB", (64, 64)).save(picture, format="PNG")
    fits = httpx.post(upload, files={"file": ("a.png", picture.getvalue())}, headers=token)
    assert fits.status_code == 201, fits.text

    max_upload = DEFAULTS["max_upload_bytes"].default
    over = httpx.post(
        upload,
        files={"file": ("a.png", b"x" * (max_upload + UPLOAD_ENVELOPE_BYTES))},
        headers=token,
    )
    assert over.status_code == 413
    assert from_proxy(over)

    json_over = httpx.post(
        f"{nginx_in_front}/api/products/{product}/images",
        content=b" " * (DEFAULTS["max_json_body_bytes"].default + 1),
        headers={**token, "content-type": "application/json"},
    )
    assert json_over.status_code == 413
    assert from_proxy(json_over)

    form_over = httpx.post(
        f"{nginx_in_front}/console/login",
        data={"token": "x" * DEFAULTS["max_form_body_bytes"].default},
    )
    assert form_over.status_code == 413
    assert from_proxy(form_over)

    # Under the limits, the app answers as itself (its JSON), through the proxy.
    json_under = httpx.post(
        f"{nginx_in_front}/api/products/{product}/images",
        json={"url": "not a url"},
        headers=token,
    )
    assert json_under.status_code == 422
    assert json_under.json()["detail"][0]["loc"][-1] == "url"
