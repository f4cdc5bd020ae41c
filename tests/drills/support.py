"""Shared pieces of the drills: a live uvicorn server in a thread, a private PostgreSQL server
that can be stopped and started (never the shared one), toggle files, and SQL invariants."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine, text

from app.core.database import tenant_schema
from app.seed.bulk import insert_legacy_products
from flags.client import TOGGLES_FILE, Toggle

HANG_BOUND = 15.0  # seconds a single request may take before it counts as a hang
START_BOUND = 30.0


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_BOUND
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=START_BOUND)
        sock.close()
        assert not thread.is_alive(), "the server did not stop within the bound"


def write_toggle_file(
    path: Path,
    *,
    dual_write: bool = True,
    read_table: Sequence[int] = (),
    shadow: Sequence[int] = (),
    pause: bool = False,
) -> None:
    """A copy of flags/toggles.json with these values, replaced atomically."""
    definitions = json.loads(TOGGLES_FILE.read_text())
    for feature in definitions["features"]:
        name = feature["name"]
        if name == Toggle.DUAL_WRITE:
            feature["enabled"] = dual_write
        elif name == Toggle.BACKFILL_PAUSE:
            feature["enabled"] = pause
        elif name == Toggle.READ_TABLE:
            feature["strategies"][0]["constraints"][0]["values"] = [str(t) for t in read_table]
        elif name == Toggle.SHADOW_COMPARE:
            feature["strategies"][0]["constraints"][0]["values"] = [str(t) for t in shadow]
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(definitions))
    os.replace(temporary, path)


def seed_products(
    engine: Engine,
    tenant: int,
    count: int,
    *,
    images_each: int = 4,
    base: str = "http://testserver/media",
) -> None:
    """`count` products straight in SQL, `images_each` legacy images each (1 in 5 legacy)."""
    insert_legacy_products(engine, tenant, count, images_each=images_each, base=base)


def table_invariants(engine: Engine, tenant: int) -> dict[str, int]:
    """Counts that must be 0 at any instant, whatever was killed when (all-or-nothing per
    product, no duplicate, orders 0..n-1, no row without its product, no gap before the
    checkpoint of the latest run), plus the row total."""
    schema = tenant_schema(tenant)
    with engine.connect() as connection:
        row = connection.execute(
            text(
                f"""
                WITH per_product AS (
                    SELECT p.id, jsonb_array_length(p.images) AS want,
                           count(i.id) AS got, count(DISTINCT i."order") AS orders,
                           coalesce(max(i."order"), -1) AS top,
                           count(DISTINCT i.url) AS urls
                    FROM {schema}.products p
                    LEFT JOIN {schema}.product_images i ON i.product_id = p.id
                    GROUP BY p.id, p.images
                ), latest AS (
                    SELECT coalesce(max(checkpoint), 0) AS checkpoint FROM {schema}.backfill_runs
                    WHERE id = (SELECT max(id) FROM {schema}.backfill_runs)
                )
                SELECT
                  (SELECT count(*) FROM per_product WHERE got NOT IN (0, want)) AS partial,
                  (SELECT count(*) FROM per_product WHERE got <> orders OR got <> urls)
                      AS duplicated,
                  (SELECT count(*) FROM per_product WHERE got > 0 AND top <> got - 1)
                      AS not_contiguous,
                  (SELECT count(*) FROM {schema}.product_images i WHERE NOT EXISTS
                      (SELECT 1 FROM {schema}.products p WHERE p.id = i.product_id))
                      AS orphaned,
                  (SELECT count(*) FROM per_product, latest
                      WHERE id <= latest.checkpoint AND got = 0 AND want > 0) AS gap,
                  (SELECT count(*) FROM {schema}.product_images) AS rows
                """
            )
        ).one()
    return dict(row._mapping)


class PrivatePostgres:
    """A PostgreSQL server of our own on a free loopback port, in a temporary folder: the
    drills stop and start it; the shared server on 5432 is never touched."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.port = free_loopback_port()
        self.root = Path(tempfile.mkdtemp(prefix="pg-drill-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        # initdb and postgres refuse to run as root: run them as an ordinary account.
        self.user: str | None = None
        if os.geteuid() == 0:
            self.user = _unprivileged_account()
            account = pwd.getpwnam(self.user)
            os.chown(self.root, account.pw_uid, account.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60.0) -> None:
        subprocess.run(
            [str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            timeout=timeout,
            user=self.user,
            cwd=self.root,
        )

    def init(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8"
        )

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` disconnects every session (57P01); `immediate` is a crash (no checkpoint)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def is_running(self) -> bool:
        result = subprocess.run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "status"],
            capture_output=True,
            user=self.user,
            cwd=self.root,
            check=False,
        )
        return result.returncode == 0

    def cleanup(self) -> None:
        if self.data.exists() and self.is_running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()


def _postgres_bin() -> Path:
    """Debian's newest PostgreSQL binaries, else the ones in the pgserver wheel."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3])
    )
    if debian:
        return debian[-1].parent
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def _unprivileged_account() -> str:
    for name in ("postgres", "pgserver", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root with no unprivileged account for PostgreSQL")
