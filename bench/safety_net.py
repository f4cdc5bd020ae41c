"""What the safety net (the triggers that log writes of `products.images` outside the
dual-write) costs per write, measured against the same writes with no trigger at all.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
      .venv/bin/python bench/safety_net.py --writes 2000

One tenant of 2,000 legacy products (5 images each), backfilled. Each write is its own
transaction shaped like the dual-write's (lock the product, replace its JSONB and its five
rows), in three modes, rounds
interleaved so that drift on a shared machine hits all three alike:

- **no trigger**: the triggers dropped (the baseline);
- **dual-write**: the triggers in place and the writer declared with `set_config` in the
  product's lock statement, as `lock_product` does (the triggers' WHEN clause skips the
  call);
- **outside**: the triggers in place, no declaration: the function runs (an UPDATE of the
  one-row state table and an upsert into `changed_products`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from scratch import fill_products, scratch_database  # bench/scratch.py, beside this script
from sqlalchemy import Engine, text

from app.core import migrate
from app.core.database import quoted_schema, tenant_schema
from app.repositories import migration_state
from app.services.tenant_service import create_tenant
from backfill.runner import RunOptions, run_tenant

PRODUCTS = 2_000


def write(engine: Engine, schema: str, product: int, serial: int, *, declare: bool) -> float:
    """One dual-write shaped transaction: lock the product, replace its JSONB and its five
    rows (new urls each time, so the JSONB really changes)."""
    elements = [
        {"url": f"https://cdn.example/{product}/{serial}-{k}.jpg", "order": k} for k in range(5)
    ]
    started = time.perf_counter()
    with engine.begin() as connection:
        # As lock_product does it: the declaration rides on the lock's round trip.
        declared = ", set_config('pim.images_writer', 'dual-write', true)" if declare else ""
        connection.execute(
            text(f"SELECT id{declared} FROM {schema}.products WHERE id = :id FOR UPDATE"),
            {"id": product},
        )
        connection.execute(
            text(f"UPDATE {schema}.products SET images = CAST(:v AS jsonb) WHERE id = :id"),
            {"v": json.dumps(elements), "id": product},
        )
        connection.execute(
            text(f"DELETE FROM {schema}.product_images WHERE product_id = :id"), {"id": product}
        )
        connection.execute(
            text(
                f'INSERT INTO {schema}.product_images (id, product_id, url, "order") '
                "SELECT gen_random_uuid(), :id, e ->> 'url', (e ->> 'order')::int "
                "FROM jsonb_array_elements(CAST(:v AS jsonb)) AS e"
            ),
            {"v": json.dumps(elements), "id": product},
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=2_000, help="writes per mode")
    args = parser.parse_args()
    with scratch_database() as engine:
        migrate.upgrade(engine, lock_retries=0)
        tenant = create_tenant(engine, email="bench@example.com").id
        fill_products(engine, tenant, PRODUCTS, 5)
        run_tenant(engine, tenant, RunOptions())
        schema = quoted_schema(tenant_schema(tenant))
        times: dict[str, list[float]] = {"no trigger": [], "dual-write": [], "outside": []}
        serial = 0
        for round_start in range(0, args.writes, 100):
            for mode in times:
                with engine.begin() as connection:
                    if mode == "no trigger":
                        migration_state.remove_triggers(connection, schema)
                    else:
                        migration_state.remove_triggers(connection, schema)
                        migration_state.install_triggers(connection, schema)
                for i in range(round_start, min(round_start + 100, args.writes)):
                    product = 1 + i % PRODUCTS
                    serial += 1
                    times[mode].append(
                        write(engine, schema, product, serial, declare=mode == "dual-write")
                    )
        baseline = statistics.median(times["no trigger"])
        print(f"{args.writes} writes per mode, one transaction each; median per write:")
        for mode, values in times.items():
            median = statistics.median(values)
            p99 = sorted(values)[int(len(values) * 0.99) - 1]
            print(
                f"  {mode:<11} {median * 1000:6.3f} ms  (p99 {p99 * 1000:6.3f} ms)  "
                f"{median / baseline:5.2f}x the baseline"
            )
        with engine.connect() as connection:
            logged = len(migration_state.changed_products(connection, schema))
        print(f"changed_products after the run: {logged} (only the 'outside' writes)")


if __name__ == "__main__":
    main()
