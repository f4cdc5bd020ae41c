"""The backfill over many small tenants against a raw per-schema loop, in one process.

    .venv/bin/python bench/backfill_tenants.py --tenants 1000 --products 120 --images 5

Reports runner / raw (target >= 0.70): `run_tenant` for every tenant (run bookkeeping,
advisory lock, checkpoints) against one `INSERT ... SELECT` of the same projection per
schema. Needs DATABASE_URL pointing at a server where it may create a scratch database.
"""

from __future__ import annotations

import argparse
import time

from scratch import (  # bench/scratch.py, beside this script
    create_users,
    fill_products,
    scratch_database,
)
from sqlalchemy import Engine, text

from app.core import migrate
from app.core.database import tenant_schema
from backfill.projection import project_products
from backfill.runner import RunOptions, run_tenant

LEGACY = ("pythonApiWOO",)


def clear(engine: Engine, tenants: list[int]) -> None:
    for tenant in tenants:
        with engine.begin() as connection:
            schema = tenant_schema(tenant)
            connection.execute(
                text(
                    f"TRUNCATE {schema}.product_images, {schema}.rejected_image_elements, "
                    f"{schema}.backfill_runs CASCADE"  # and its key ranges
                )
            )
    with engine.connect() as connection:
        connection.execute(text("CHECKPOINT"))


def raw(engine: Engine, tenants: list[int]) -> float:
    started = time.perf_counter()
    for tenant in tenants:
        with engine.begin() as connection:
            connection.execute(text(f"SET LOCAL search_path TO {tenant_schema(tenant)}, public"))
            ids = list(connection.execute(text("SELECT id FROM products")).scalars())
            project_products(connection, ids, LEGACY)
    return time.perf_counter() - started


def runner(engine: Engine, tenants: list[int]) -> float:
    started = time.perf_counter()
    for tenant in tenants:
        assert run_tenant(engine, tenant, RunOptions(legacy_sources=LEGACY)).status == "done"
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--products", type=int, default=120)
    parser.add_argument("--images", type=int, default=5)
    args = parser.parse_args()
    with scratch_database() as engine:
        migrate.upgrade(engine, scope="public")
        tenants = create_users(engine, args.tenants)
        started = time.perf_counter()
        migrate.upgrade(engine)
        migrate_s = time.perf_counter() - started
        for tenant in tenants:  # one transaction per schema: one would run out of lock slots
            fill_products(engine, tenant, args.products, args.images)
        total = args.tenants * args.products * args.images
        clear(engine, tenants)
        raw_s = raw(engine, tenants)
        clear(engine, tenants)
        runner_s = runner(engine, tenants)
        print(f"{args.tenants} tenants x {args.products * args.images} images = {total} images")
        print(
            f"alembic upgrade head     : {migrate_s:7.2f} s  "
            f"({1000 * migrate_s / args.tenants:.1f} ms per tenant)"
        )
        print(f"raw per-schema loop      : {raw_s:7.2f} s  {total / raw_s:9.0f} images/s")
        print(
            f"backfill runner, all     : {runner_s:7.2f} s  {total / runner_s:9.0f} images/s  "
            f"({1000 * runner_s / args.tenants:.1f} ms per tenant)"
        )
        print(f"runner / raw = {raw_s / runner_s:.2f}  (target >= 0.70)")


if __name__ == "__main__":
    main()
