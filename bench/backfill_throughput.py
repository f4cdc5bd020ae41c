"""Backfill throughput against its baselines, measured in one process on one database.

    .venv/bin/python bench/backfill_throughput.py --products 200000 --images 5

Reports ratios (absolute times drift on shared machines):
  runner / raw      the backfill at default settings vs one raw INSERT ... SELECT of the same
                    projection over all products (target >= 0.8)
  runner / naive    vs a row-by-row loop (normalise in Python, one INSERT per image), timed on
                    a sample and extrapolated (target >= 15)
Needs DATABASE_URL pointing at a server where it may create and drop a scratch database.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime

from scratch import fill_products, scratch_database  # bench/scratch.py, beside this script
from sqlalchemy import text

from app.core import migrate
from app.core.database import tenant_schema
from app.images import image_to_row, normalise_legacy
from app.services.tenant_service import create_tenant
from backfill.projection import project_products
from backfill.runner import RunOptions, run_tenant

LEGACY = ("pythonApiWOO",)


def clear(engine, tenant: int) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tenant_schema(tenant)}.product_images"))
        connection.execute(text(f"TRUNCATE {tenant_schema(tenant)}.rejected_image_elements"))
        connection.execute(text(f"TRUNCATE {tenant_schema(tenant)}.backfill_runs"))
        connection.execute(text("CHECKPOINT"))


def raw(engine, tenant: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(text(f"SET LOCAL search_path TO {tenant_schema(tenant)}, public"))
        ids = list(connection.execute(text("SELECT id FROM products ORDER BY id")).scalars())
        project_products(connection, ids, LEGACY)
    return time.perf_counter() - started


def runner(engine, tenant: int) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = run_tenant(engine, tenant, RunOptions(legacy_sources=LEGACY))
    assert result.status == "done"
    return time.perf_counter() - started


def naive(engine, tenant: int, sample: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds per product of a row-by-row loop, on `sample` products."""
    schema = tenant_schema(tenant)
    started = time.perf_counter()
    with engine.begin() as connection:
        rows = connection.execute(
            text(
                f"SELECT id, images, source, created_at FROM {schema}.products ORDER BY id LIMIT :n"
            ),
            {"n": sample},
        ).all()
        for row in rows:
            images = normalise_legacy(
                row.images,
                product_id=row.id,
                product_created_at=row.created_at,
                is_legacy_source=row.source in LEGACY,
            ).images
            for image in images:
                values = image_to_row(image, row.id)
                connection.execute(
                    text(
                        f'INSERT INTO {schema}.product_images (id, product_id, url, "order", '
                        "is_label, alt_text, tags, mime_type, file_size, width, height, "
                        "created_at, updated_at) VALUES (:id, :product_id, :url, :order, "
                        ":is_label, :alt_text, :tags, :mime_type, :file_size, :width, :height, "
                        ":created_at, :updated_at)"
                    ),
                    values,
                )
    return (time.perf_counter() - started) / sample


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=200_000)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--naive-sample", type=int, default=2_000)
    args = parser.parse_args()
    with scratch_database() as engine:
        migrate.upgrade(engine)
        tenant = create_tenant(engine, email="bench@example.com").id
        fill_products(engine, tenant, args.products, args.images)
        total = args.products * args.images
        clear(engine, tenant)
        raw_s = raw(engine, tenant)
        clear(engine, tenant)
        runner_s = runner(engine, tenant)
        clear(engine, tenant)
        naive_s = naive(engine, tenant, args.naive_sample) * args.products
        print(f"machine: {os.cpu_count()} cores; {datetime.now(UTC):%Y-%m-%d}")
        print(f"{args.products} products, {total} images")
        print(f"raw INSERT ... SELECT : {raw_s:8.2f} s  {total / raw_s:10.0f} images/s")
        print(f"backfill runner       : {runner_s:8.2f} s  {total / runner_s:10.0f} images/s")
        print(f"naive row-by-row (est): {naive_s:8.2f} s  {total / naive_s:10.0f} images/s")
        print(f"runner / raw   = {raw_s / runner_s:.2f}  (target >= 0.80)")
        print(f"runner / naive = {naive_s / runner_s:.1f}x (target >= 15)")


if __name__ == "__main__":
    main()
