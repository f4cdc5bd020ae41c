"""The operator console with many tenants: how long a refresh of the tenants' rows takes
(they back the overview, the tenants table and the progress poll), against a baseline of
one `SELECT count(*) FROM products` per tenant in the same process (the floor of any
per-tenant read), and how long the pages take once the rows are in memory.

    .venv/bin/python bench/console_tenants.py --tenants 1000
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from scratch import create_users, fill_products, scratch_database  # bench/scratch.py
from sqlalchemy import Engine, text

from app.console.state import tenant_rows
from app.core import migrate
from app.core.database import tenant_schema
from app.core.security import issue_token, now_utc
from app.core.settings import Settings
from app.main import create_app
from backfill.runner import RunOptions, run_tenant
from flags.client import FlagClient

SECRET = secrets.token_hex(24)  # this run only


def per_tenant_baseline(engine: Engine, ids: list[int]) -> float:
    started = time.perf_counter()
    with engine.connect() as connection:
        for tenant in ids:
            connection.execute(text(f'SELECT count(*) FROM "{tenant_schema(tenant)}".products'))
            connection.rollback()
    return time.perf_counter() - started


def timed(call: Callable[[], object], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--filled", type=int, default=20, help="tenants given products")
    args = parser.parse_args()
    with scratch_database() as engine, tempfile.TemporaryDirectory() as folder:
        migrate.upgrade(engine)
        ids = create_users(engine, args.tenants)
        started = time.perf_counter()
        migrate.upgrade(engine, tenant_ids=ids)
        print(f"{args.tenants} tenant schemas migrated in {time.perf_counter() - started:.1f} s")
        for tenant in ids[: args.filled]:  # some tenants with products, backfilled
            fill_products(engine, tenant, products=300, images=6)
            run_tenant(engine, tenant, RunOptions())

        flags = FlagClient()
        refresh = timed(lambda: tenant_rows(engine, flags.flags_for), 4)
        baseline = timed(lambda: per_tenant_baseline(engine, ids), 4)
        flags.close()
        print(
            "tenant_rows (first, then warm): "
            + ", ".join(f"{s:.2f}" for s in refresh)
            + " s; one count(*) per tenant: "
            + ", ".join(f"{s:.2f}" for s in baseline)
            + " s"
        )
        warm = statistics.median(refresh[1:])
        print(
            f"ratio, warm refresh / per-tenant baseline: {warm / statistics.median(baseline):.2f}x"
        )

        settings = Settings(
            app_env="test",
            database_url=engine.url.render_as_string(hide_password=False),
            data_dir=Path(folder) / "data",
            media_root=Path(folder) / "media",
            jwt_secret=SECRET,
            log_format="console",
            log_level="WARNING",
        )
        app = create_app(settings, engine)
        token = issue_token(
            SECRET, user_id=None, is_admin=True, ttl=timedelta(hours=1), now=now_utc()
        )
        with TestClient(app, base_url="http://testserver") as client:
            signed_in = client.post("/admin/login", data={"token": token}, follow_redirects=False)
            assert signed_in.status_code == 303, signed_in.text
            started = time.perf_counter()
            page = client.get("/admin", follow_redirects=False)
            first = time.perf_counter() - started
            assert f'id="tenants-count">{args.tenants}<' in page.text, page.status_code
            started = time.perf_counter()
            app.state.console_rows.wait()  # the label totals, counted behind the first view
            labels = time.perf_counter() - started
            views = {
                "/admin": timed(lambda: client.get("/admin"), 20),
                "/admin/tenants?page=7&sort=migrated": timed(
                    lambda: client.get("/admin/tenants?page=7&sort=migrated"), 20
                ),
                "/admin/fragments/progress": timed(
                    lambda: client.get("/admin/fragments/progress"), 20
                ),
            }
            print(
                f"first overview (reads every row): {first:.2f} s; "
                f"label totals counted behind it in a further {labels:.2f} s"
            )
            for path, seconds in views.items():
                median = statistics.median(seconds)
                print(
                    f"{path}: median {median * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms "
                    f"over 20 views (refresh / view: {warm / median:.0f}x)"
                )
            app.state.console_rows.wait()


if __name__ == "__main__":
    main()
