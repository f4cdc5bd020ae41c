"""A real Unleash server (npm `unleash-server` 7.5.1, pinned in tests/unleash/) for
integration tests: its own fresh database, loopback only, stopped by process group."""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

UNLEASH_DIR = Path(__file__).resolve().parent / "unleash"
ADMIN_TOKEN = "*:*.admin-secret"
CLIENT_TOKEN = "default:development.client-secret"
MIN_NODE_MAJOR = 20  # unleash-server 7.5.1 is the newest release that runs on Node 20
INSTALL_TIMEOUT = 600.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_TAIL_CHARS = 4000
_INSTALLED_STAMP = UNLEASH_DIR / "node_modules" / ".harness-installed"


class UnleashUnavailable(Exception):
    """This machine cannot run the Unleash server (no `node`/`npm`, or too old a Node)."""


class UnleashStartError(RuntimeError):
    """The Unleash server did not become healthy; the message carries its log's tail."""


@dataclass(frozen=True)
class UnleashServer:
    """A running server: `url` is the base (http://127.0.0.1:PORT), `api_url` is url + /api."""

    url: str
    api_url: str
    admin_token: str
    client_token: str
    pid: int


def _tail(text: str) -> str:
    return text[-_TAIL_CHARS:]


def _check_node() -> None:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise UnleashUnavailable(f"`{tool}` is not on PATH")
    version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    if major < MIN_NODE_MAJOR:
        raise UnleashUnavailable(f"node {version} found, unleash-server needs {MIN_NODE_MAJOR}+")


def _lock_digest() -> str:
    return hashlib.sha256((UNLEASH_DIR / "package-lock.json").read_bytes()).hexdigest()


def _npm(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["npm", *args, "--no-audit", "--no-fund"],
            cwd=UNLEASH_DIR,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as timeout:
        raise RuntimeError(f"`npm {' '.join(args)}` took over {INSTALL_TIMEOUT:.0f} s") from timeout


def ensure_installed() -> Path:
    """Install tests/unleash/node_modules from the lock file once; return tests/unleash.

    An exclusive file lock serialises pytest-xdist workers: one installs, the others wait
    and then find the stamp. The stamp holds the lock file's digest, so an install that
    was interrupted, or a changed lock file, triggers a fresh `npm ci`.
    """
    _check_node()
    lock_path = Path(tempfile.gettempdir()) / (
        "unleash-harness-" + hashlib.sha256(str(UNLEASH_DIR).encode()).hexdigest()[:12] + ".lock"
    )
    with lock_path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file is closed
        server_package = UNLEASH_DIR / "node_modules" / "unleash-server" / "package.json"
        if server_package.exists() and _installed_digest() == _lock_digest():
            return UNLEASH_DIR
        result = _npm("ci")
        if result.returncode != 0:
            fallback = _npm("install")
            if fallback.returncode != 0:
                raise RuntimeError(
                    f"npm could not install unleash-server in {UNLEASH_DIR}:\n"
                    f"`npm ci` said:\n{_tail(result.stderr)}\n"
                    f"`npm install` said:\n{_tail(fallback.stderr)}"
                )
        if not server_package.exists():
            raise RuntimeError(f"npm succeeded but {server_package} is missing")
        _INSTALLED_STAMP.write_text(_lock_digest())
    return UNLEASH_DIR


def _installed_digest() -> str | None:
    try:
        return _INSTALLED_STAMP.read_text().strip()
    except FileNotFoundError:
        return None


def _loopback_parts(database_url: str) -> dict[str, str]:
    """libpq parts of `database_url` (SQLAlchemy's `+psycopg` accepted), loopback only."""
    scheme, separator, rest = database_url.partition("://")
    plain = f"{scheme.split('+')[0]}{separator}{rest}" if separator else database_url
    parts = {key: str(value) for key, value in conninfo_to_dict(plain).items() if value}
    host = parts.get("host", "localhost")
    if not (host.startswith("/") or host == "localhost" or _is_loopback_ip(host)):
        raise ValueError(f"the Unleash harness only uses a loopback PostgreSQL, not {host!r}")
    parts["host"] = host
    return parts


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def _fresh_database(parts: dict[str, str]) -> Iterator[str]:
    """Create `unleash_<hex>` on the server, yield its name, drop it (even if in use)."""
    name = f"unleash_{secrets.token_hex(6)}"
    conninfo = make_conninfo("", connect_timeout="10", **parts)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it if still there after STOP_TIMEOUT."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            process.wait()


def _wait_until_healthy(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        while True:
            if process.poll() is not None:
                raise UnleashStartError(
                    f"Unleash exited with code {process.returncode} before answering "
                    f"{url}/health; log tail:\n{_tail(log_path.read_text(errors='replace'))}"
                )
            try:
                if http.get(f"{url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise UnleashStartError(
                    f"Unleash did not answer {url}/health within {START_TIMEOUT:g} s; "
                    f"log tail:\n{_tail(log_path.read_text(errors='replace'))}"
                )
            time.sleep(0.2)


@contextmanager
def running_unleash(database_url: str) -> Iterator[UnleashServer]:
    """Start Unleash on 127.0.0.1 with a fresh database on `database_url`'s server.

    Raises UnleashUnavailable when Node is missing (callers may skip) and
    UnleashStartError when the server does not become healthy.
    """
    directory = ensure_installed()
    parts = _loopback_parts(database_url)
    with _fresh_database(parts) as name, tempfile.TemporaryDirectory(prefix="unleash-") as tmp:
        port = _free_loopback_port()
        url = f"http://127.0.0.1:{port}"
        # Unleash merges DATABASE_* (the suite's own DATABASE_URL included) into its
        # connection, so none of them reach it; start.js reads the DB_* parts instead.
        env = {key: value for key, value in os.environ.items() if not key.startswith("DATABASE_")}
        env.update(
            SEND_TELEMETRY="false",
            DB_HOST=parts["host"],
            DB_PORT=parts.get("port", "5432"),
            DB_USER=parts.get("user", getpass.getuser()),  # libpq's default too
            DB_PASSWORD=parts.get("password", ""),
            DB_NAME=name,
            PORT=str(port),
            ADMIN_TOKEN=ADMIN_TOKEN,
            CLIENT_TOKEN=CLIENT_TOKEN,
        )
        log_path = Path(tmp) / "unleash.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                ["node", "start.js"],
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )
        try:
            _wait_until_healthy(process, url, log_path)
            yield UnleashServer(
                url=url,
                api_url=f"{url}/api",
                admin_token=ADMIN_TOKEN,
                client_token=CLIENT_TOKEN,
                pid=process.pid,
            )
        finally:
            _stop(process)
