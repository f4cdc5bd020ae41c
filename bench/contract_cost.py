"""What the last stages cost on one large tenant: verify, canonicalize, contract (guards,
backup, drop) and uncontract (the way back), timed in one process, with how long the
tenant's reads and writes waited meanwhile.

    .venv/bin/python bench/contract_cost.py --products 200000 --images 5

The brief's whole fleet is 3,282 products; 1,000x is about 3.3 million, spread over tenants
that each migrate on their own, so one tenant of 200,000 products (1,000,000 images) shows
the per-tenant cost at that scale. Needs DATABASE_URL pointing at a server where it may
create a scratch database.

The uncontract is measured twice in the same run, each time right after a contract and a
VACUUM, with the same traffic: first the baseline, the uncontract as it was until issue 21
(one transaction: ADD COLUMN ... NOT NULL DEFAULT, the rebuild, the triggers, all under the
ACCESS EXCLUSIVE lock the ADD COLUMN takes; reproduced here as `blocking_uncontract`), then
the one the contract history runs now (`migrate.uncontract`: staging column filled in
batches, brief locks only). The traffic: a reader and a writer, each a transaction every
50 ms on a random product, doing what a request of a contracted tenant does (the reader:
products' ACCESS SHARE, the product, its rows; the writer: the product's row lock, an
UPDATE of its rows and of the product, contents unchanged so that the bench leaves no
drift); each transaction's duration is its wait.
"""

from __future__ import annotations

import argparse
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from scratch import fill_products, scratch_database  # bench/scratch.py, beside this script
from sqlalchemy import Engine, text

from app.core import migrate
from app.core.database import quoted_schema, tenant_schema
from app.repositories import migration_state
from app.services.tenant_service import create_tenant
from backfill.contract import BATCH, canonicalize_tenant, rebuilt
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant


def timed(label: str, step):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - started
    print(f"{label:<38}: {seconds:8.2f} s", flush=True)
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


@dataclass
class Traffic:
    """How long each of the tenant's reads and writes took while a step ran."""

    reads: list[float] = field(default_factory=list)
    writes: list[float] = field(default_factory=list)

    def report(self) -> None:
        for name, waits in (("read", self.reads), ("write", self.writes)):
            ordered = sorted(waits)
            p99 = ordered[int(len(ordered) * 0.99)] if ordered else 0.0
            print(
                f"{'  a ' + name + ' waited at most':<38}: {max(waits, default=0):8.2f} s "
                f"(p99 {p99:.3f} s, {len(waits)} {name}s)",
                flush=True,
            )


@contextmanager
def request_traffic(engine: Engine, tenant: int, products: int) -> Iterator[Traffic]:
    """A reader and a writer, as described in the module's docstring."""
    schema = quoted_schema(tenant_schema(tenant))
    traffic = Traffic()
    stop = threading.Event()

    def read(connection) -> None:  # type: ignore[no-untyped-def]
        product = random.randint(1, products)
        connection.execute(text(f"SELECT count(*) FROM (SELECT FROM {schema}.products LIMIT 0) h"))
        connection.execute(text(f"SELECT title FROM {schema}.products WHERE id = {product}"))
        connection.execute(
            text(f"SELECT * FROM {schema}.product_images WHERE product_id = {product}")
        )

    def write(connection) -> None:  # type: ignore[no-untyped-def]
        product = random.randint(1, products)
        connection.execute(text(f"SELECT count(*) FROM (SELECT FROM {schema}.products LIMIT 0) h"))
        connection.execute(
            text(f"SELECT id FROM {schema}.products WHERE id = {product} FOR UPDATE")
        )
        connection.execute(
            text(
                f"UPDATE {schema}.product_images SET alt_text = alt_text "
                f"WHERE product_id = {product}"
            )
        )
        connection.execute(
            text(f"UPDATE {schema}.products SET updated_at = updated_at WHERE id = {product}")
        )

    def loop(step, waits: list[float]) -> None:  # type: ignore[no-untyped-def]
        while not stop.is_set():
            started = time.perf_counter()
            with engine.begin() as connection:
                step(connection)
            waits.append(time.perf_counter() - started)
            stop.wait(0.05)

    threads = [
        threading.Thread(target=loop, args=(read, traffic.reads)),
        threading.Thread(target=loop, args=(write, traffic.writes)),
    ]
    for thread in threads:
        thread.start()
    try:
        yield traffic
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def blocking_uncontract(engine: Engine, tenant: int) -> None:
    """The baseline: the contract's downgrade as it was until issue 21, in one transaction
    (and the contract history's version row removed, as Alembic did)."""
    schema = quoted_schema(tenant_schema(tenant))
    with engine.begin() as connection:
        connection.execute(text("SET LOCAL lock_timeout = '500ms'"))
        connection.execute(
            text(f"ALTER TABLE {schema}.products ADD COLUMN images jsonb NOT NULL DEFAULT '[]'")
        )
        after = 0
        while True:
            ids = list(
                connection.execute(
                    text(f"SELECT id FROM {schema}.products WHERE id > :a ORDER BY id LIMIT :n"),
                    {"a": after, "n": BATCH},
                ).scalars()
            )
            if not ids:
                break
            connection.execute(
                text(
                    f"UPDATE {schema}.products AS p SET images = {rebuilt(schema)} "
                    "WHERE p.id = ANY(:ids)"
                ),
                {"ids": ids},
            )
            after = ids[-1]
        elements, rows = connection.execute(
            text(
                f"SELECT (SELECT sum(jsonb_array_length(images)) FROM {schema}.products), "
                f"(SELECT count(*) FROM {schema}.product_images)"
            )
        ).one()
        assert int(elements) == int(rows)
        migration_state.install_triggers(connection, schema)
        connection.execute(
            text(f"UPDATE {schema}.image_migration_state SET contracted_at = NULL WHERE id = 1")
        )
        connection.execute(text(f"DELETE FROM {schema}.alembic_version_contract"))


def vacuum(engine: Engine, tenant: int) -> None:
    """Both uncontracts start from the same table state (the previous rebuild's dead rows
    gone)."""
    schema = quoted_schema(tenant_schema(tenant))
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(text(f"VACUUM ANALYZE {schema}.products, {schema}.product_images"))


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
        print(f"{'  a write waited at most':<38}: {max(waits):8.2f} s ({len(waits)} writes)")
        vacuum(engine, tenant)
        with request_traffic(engine, tenant, args.products) as traffic:
            timed(
                "uncontract, baseline (one transaction)",
                lambda: blocking_uncontract(engine, tenant),
            )
        traffic.report()
        again, _ = timed(
            "verify after the baseline round trip", lambda: verify_tenant(engine, tenant)
        )
        assert again.is_verified
        timed("contract again", lambda: migrate.contract(engine, tenant_ids=[tenant]))
        vacuum(engine, tenant)
        with request_traffic(engine, tenant, args.products) as traffic:
            timed(
                "uncontract (staging column, batches)",
                lambda: migrate.uncontract(engine, tenant_ids=[tenant]),
            )
        traffic.report()
        again, _ = timed("verify after the round trip", lambda: verify_tenant(engine, tenant))
        assert again.is_verified


if __name__ == "__main__":
    main()
