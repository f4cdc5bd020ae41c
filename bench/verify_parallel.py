"""Verify on several connections sharing one snapshot, against one connection and against
the backfill, measured in one process on one database.

    .venv/bin/python bench/verify_parallel.py --products 200000 --images 5 --repeat 3

Each round backfills a tenant of products x images from scratch (the runner at its
defaults, timed: the baseline), then times a full verify with one connection and with
--workers N (2 by default); --repeat rounds, and the medians (and ranges) of:
  verify(N) / runner   the issue's target: <= 0.5
  verify(N) / verify(1)
Each verify must find the tenant verified. Wall time is the figure here (the point of N
connections is the wall clock; CPU stays the same). Needs DATABASE_URL pointing at a server
where it may create and drop a scratch database.
"""

from __future__ import annotations

import argparse
import statistics
import time

from scratch import fill_products, scratch_database  # bench/scratch.py, beside this script
from sqlalchemy import text

from app.core import migrate
from app.core.database import tenant_schema
from app.services.tenant_service import create_tenant
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant

LEGACY = ("pythonApiWOO",)


def backfill(engine, tenant: int) -> float:  # type: ignore[no-untyped-def]
    schema = tenant_schema(tenant)
    with engine.begin() as connection:  # from scratch, and no dirty pages of the last round
        connection.execute(
            text(
                f"TRUNCATE {schema}.product_images, {schema}.rejected_image_elements, "
                f"{schema}.backfill_runs CASCADE"
            )
        )
        connection.execute(text("CHECKPOINT"))
    started = time.perf_counter()
    result = run_tenant(engine, tenant, RunOptions(legacy_sources=LEGACY))
    seconds = time.perf_counter() - started
    assert result.status == "done", result
    return seconds


def timed_verify(engine, tenant: int, workers: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    report = verify_tenant(engine, tenant, workers=workers)
    seconds = time.perf_counter() - started
    assert report.is_verified, report.mismatches[:3]
    return seconds


def _median_range(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f} .. {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=200_000)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with scratch_database() as engine:
        migrate.upgrade(engine, lock_retries=0)
        tenant = create_tenant(engine, email="bench@example.com").id
        fill_products(engine, tenant, args.products, args.images)
        runs: list[float] = []
        one: list[float] = []
        many: list[float] = []
        for _ in range(args.repeat):
            runs.append(backfill(engine, tenant))
            one.append(timed_verify(engine, tenant, 1))
            many.append(timed_verify(engine, tenant, args.workers))
        images = args.products * args.images
        n = args.workers
        print(f"{images:,} images; backfill (runner) {_median_range(runs)} s")
        print(f"verify, 1 connection:  {_median_range(one)} s")
        print(f"verify, {n} connections: {_median_range(many)} s")
        print(f"verify({n}) / runner    {_ratios(many, runs)}  (target <= 0.5)")
        print(f"verify(1) / runner    {_ratios(one, runs)}")
        print(f"verify({n}) / verify(1) {_ratios(many, one)}")


def _ratios(measured: list[float], baseline: list[float]) -> str:
    """Per round: measured / baseline of the same round."""
    return _median_range([m / b for m, b in zip(measured, baseline, strict=True)])


if __name__ == "__main__":
    main()
