"""One tenant backfilled by one worker, then by two on disjoint key ranges, in one process on
one database (issue 21, item 2: two workers >= 1.5x one).

    .venv/bin/python bench/backfill_parallel.py --products 200000 --images 5 --repeat 2

Each round times `run_tenant` at default settings with `workers=1` and with `workers=2` (the
order alternating between rounds; the table emptied and checkpointed before each run) and
reports, per count of workers, the median wall time, the CPU time (this process plus the
database's client backends, from /proc: the steadier figure when other work shares the
cores) and what the runs waited on (health throttles, yields to traffic, lock timeouts),
then the ratio one / two, per round and its median. Needs DATABASE_URL pointing at a server
where it may create and drop a scratch database.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from backfill_throughput import clear, timed  # bench/, beside this script
from scratch import fill_products, scratch_database
from sqlalchemy import text

from app.core import migrate
from app.core.database import tenant_schema
from app.services.tenant_service import create_tenant
from backfill.runner import RunOptions, TenantResult, run_tenant

LEGACY = ("pythonApiWOO",)


def backfill(
    engine: Any, tenant: int, workers: int, into: list[TenantResult], client: list[float]
) -> None:
    started = time.process_time()  # this process's CPU: what threads, not processes, share
    result = run_tenant(engine, tenant, RunOptions(legacy_sources=LEGACY, workers=workers))
    client.append(time.process_time() - started)
    assert result.status == "done", result
    into.append(result)


def _range_times(engine: Any, tenant: int) -> str:
    """Each range's products and seconds (an uneven split leaves one worker alone at the end)."""
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT range_no, products_scanned, "
                "extract(epoch FROM finished_at - started_at) AS seconds "
                f"FROM {tenant_schema(tenant)}.backfill_ranges ORDER BY range_no"
            )
        ).all()
    return ", ".join(f"#{r.range_no} {r.products_scanned} in {r.seconds:.1f} s" for r in rows)


def _load() -> str:
    """The machine's 1-minute load average (other work sharing the cores skews the ratio)."""
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        return loadavg.read().split()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=200_000)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    total = args.products * args.images
    with scratch_database() as engine:
        migrate.upgrade(engine)
        tenant = create_tenant(engine, email="bench@example.com").id
        fill_products(engine, tenant, args.products, args.images)
        print(f"filled; load average {_load()}", flush=True)
        wall: dict[int, list[float]] = {1: [], 2: []}
        cpu: dict[int, list[float]] = {1: [], 2: []}
        results: dict[int, list[TenantResult]] = {1: [], 2: []}
        client: dict[int, list[float]] = {1: [], 2: []}
        for round_no in range(args.repeat):
            order = (1, 2) if round_no % 2 == 0 else (2, 1)
            for workers in order:
                clear(engine, tenant)
                seconds, cpu_seconds = timed(
                    engine,
                    lambda w=workers: backfill(engine, tenant, w, results[w], client[w]),
                )
                wall[workers].append(seconds)
                if cpu_seconds is not None:
                    cpu[workers].append(cpu_seconds)
                print(
                    f"round {round_no + 1}, {workers} worker(s): {seconds:6.2f} s"
                    f"  (load average after: {_load()})",
                    flush=True,
                )
                if workers == 2:
                    print(f"  ranges: {_range_times(engine, tenant)}", flush=True)
        print(f"machine: {os.cpu_count()} cores; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        print(f"{args.products} products, {total} images, {args.repeat} round(s); medians")
        for workers in (1, 2):
            seconds = statistics.median(wall[workers])
            used = f"  cpu {statistics.median(cpu[workers]):7.2f} s" if cpu[workers] else ""
            done = results[workers]
            print(
                f"{workers} worker(s): {seconds:8.2f} s  {total / seconds:10.0f} images/s{used}"
                f"  client cpu {statistics.median(client[workers]):.2f} s"
                f"  throttles {[r.throttles for r in done]} yields {[r.yields for r in done]}"
                f" lock timeouts {[r.lock_timeouts for r in done]}"
            )
        ratios = sorted(one / two for one, two in zip(wall[1], wall[2], strict=True))
        print(
            f"two / one workers, wall = {statistics.median(ratios):.2f}x  target >= 1.5"
            f"  (rounds: {', '.join(f'{r:.2f}' for r in ratios)})"
        )
        if cpu[1] and cpu[2]:
            spent = sorted(two / one for one, two in zip(cpu[1], cpu[2], strict=True))
            print(f"CPU of two / CPU of one = {statistics.median(spent):.2f}")


if __name__ == "__main__":
    main()
