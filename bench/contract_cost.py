"""What the last stages cost on one large tenant: verify, canonicalize, contract (guards,
backup, drop) and uncontract (rebuild), timed in one process, with the write-blocking lock
each holds.

    .venv/bin/python bench/contract_cost.py --products 200000 --images 5

The brief's whole fleet is 3,282 products; 1,000x is about 3.3 million, spread over tenants
that each migrate on their own, so one tenant of 200,000 products (1,000,000 images) shows
the per-tenant cost at that scale. Needs DATABASE_URL pointing at a server where it may
create a scratch database.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from scratch import fill_products, scratch_database  # bench/scratch.py, beside this script
from sqlalchemy import Engine, text

from app.core import migrate
from app.core.database import tenant_schema
from app.services.tenant_service import create_tenant
from backfill.contract import canonicalize_tenant
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant


def timed(label: str, step):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - started
    print(f"{label:<34}: {seconds:8.2f} s", flush=True)
    return result, seconds


@contextmanager
def writer_latency(engine: Engine, tenant: int) -> Iterator[list[float]]:
    """A product written every 50 ms, as the API would, while the block runs: how long
    each write waited is what the contract costs the tenant's users."""
    waits: list[float] = []
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            with engine.begin() as connection:
                connection.execute(
                    text(
                        f"UPDATE {tenant_schema(tenant)}.products SET title = title, "
                        "updated_at = updated_at WHERE id = 1"
                    )
                )
            waits.append(time.perf_counter() - started)
            stop.wait(0.05)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        yield waits
    finally:
        stop.set()
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=200_000)
    parser.add_argument("--images", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {datetime.now(UTC):%Y-%m-%d}")
    print(f"one tenant, {args.products} products, {args.products * args.images} images")
    with scratch_database() as engine:
        migrate.upgrade(engine)
        tenant = create_tenant(engine, email="bench@example.com").id
        fill_products(engine, tenant, args.products, args.images)
        timed("backfill run", lambda: run_tenant(engine, tenant, RunOptions()))
        report, _ = timed("verify", lambda: verify_tenant(engine, tenant))
        assert report.is_verified
        timed("canonicalize (backup + rewrite)", lambda: canonicalize_tenant(engine, tenant))
        with writer_latency(engine, tenant) as waits:
            timed(
                "contract (guards, backup, drop)",
                lambda: migrate.contract(engine, tenant_ids=[tenant]),
            )
        print(f"{'  a write waited at most':<34}: {max(waits):8.2f} s ({len(waits)} writes)")
        timed(
            "uncontract (re-add, rebuild)", lambda: migrate.uncontract(engine, tenant_ids=[tenant])
        )
        again, _ = timed("verify after the round trip", lambda: verify_tenant(engine, tenant))
        assert again.is_verified


if __name__ == "__main__":
    main()
