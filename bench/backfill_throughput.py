"""Backfill throughput against its baselines, measured in one process on one database.

    .venv/bin/python bench/backfill_throughput.py --products 200000 --images 5

Reports ratios (absolute times drift on shared machines):
  runner / raw      the backfill at default settings vs one raw INSERT ... SELECT of the same
                    projection over all products (target >= 0.8)
  runner / naive    vs a row-by-row loop with the runner's guarantees (per product: one
                    transaction under its row lock, normalise in Python, one INSERT per image),
                    timed on a sample and extrapolated (target >= 15); also reported: the
                    leanest loop (one transaction, no lock, not resumable)
Needs DATABASE_URL pointing at a server where it may create and drop a scratch database.
"""

from __future__ import annotations

import argparse
import json
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


INSERT_ROW = (
    'INSERT INTO product_images (id, product_id, url, "order", is_label, alt_text, tags, '
    "mime_type, file_size, width, height, created_at, updated_at) VALUES (:id, :product_id, "
    ":url, :order, :is_label, :alt_text, :tags, :mime_type, :file_size, :width, :height, "
    ":created_at, :updated_at)"
)
INSERT_REJECT = (
    "INSERT INTO rejected_image_elements (product_id, position, raw, reason, detail, found_by) "
    "VALUES (:product_id, :position, CAST(:raw AS jsonb), :reason, :detail, 'backfill') "
    "ON CONFLICT DO NOTHING"
)


def naive_one_transaction(engine, tenant: int, sample: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds per product of the leanest row-by-row loop: one transaction for everything,
    no row lock, no skip of migrated products, no rejection report, not resumable."""
    started = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(text(f"SET LOCAL search_path TO {tenant_schema(tenant)}, public"))
        rows = connection.execute(
            text("SELECT id, images, source, created_at FROM products ORDER BY id LIMIT :n"),
            {"n": sample},
        ).all()
        for row in rows:
            for image in _normalised(row).images:
                connection.execute(text(INSERT_ROW), image_to_row(image, row.id))
    return (time.perf_counter() - started) / sample


def naive_per_product(engine, tenant: int, sample: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds per product of a row-by-row loop with the runner's guarantees: one
    transaction per product under its row lock (so it can be killed and resumed, and a live
    write cannot interleave), migrated products skipped, rejections reported."""
    started = time.perf_counter()
    with engine.connect() as connection:
        search_path = text(f"SET search_path TO {tenant_schema(tenant)}, public")
        connection.execute(search_path)
        connection.commit()
        ids = list(
            connection.execute(
                text("SELECT id FROM products ORDER BY id LIMIT :n"), {"n": sample}
            ).scalars()
        )
        connection.commit()
        for product_id in ids:
            with connection.begin():
                row = connection.execute(
                    text(
                        "SELECT id, images, source, created_at FROM products "
                        "WHERE id = :id FOR UPDATE"
                    ),
                    {"id": product_id},
                ).one()
                migrated = connection.execute(
                    text("SELECT EXISTS (SELECT 1 FROM product_images WHERE product_id = :id)"),
                    {"id": product_id},
                ).scalar_one()
                if migrated:
                    continue
                normalised = _normalised(row)
                for image in normalised.images:
                    connection.execute(text(INSERT_ROW), image_to_row(image, row.id))
                for element in normalised.rejected:
                    connection.execute(
                        text(INSERT_REJECT),
                        {
                            "product_id": row.id,
                            "position": -1 if element.position is None else element.position,
                            "raw": json.dumps(element.raw),
                            "reason": element.reason,
                            "detail": element.detail,
                        },
                    )
    return (time.perf_counter() - started) / sample


def _normalised(row):  # type: ignore[no-untyped-def]
    return normalise_legacy(
        row.images,
        product_id=row.id,
        product_created_at=row.created_at,
        is_legacy_source=row.source in LEGACY,
    )


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
        lean_s = naive_one_transaction(engine, tenant, args.naive_sample) * args.products
        clear(engine, tenant)
        naive_s = naive_per_product(engine, tenant, args.naive_sample) * args.products
        print(f"machine: {os.cpu_count()} cores; {datetime.now(UTC):%Y-%m-%d}")
        print(f"{args.products} products, {total} images")
        print(f"raw INSERT ... SELECT : {raw_s:8.2f} s  {total / raw_s:10.0f} images/s")
        print(f"backfill runner       : {runner_s:8.2f} s  {total / runner_s:10.0f} images/s")
        print(f"naive, per product    : {naive_s:8.2f} s  {total / naive_s:10.0f} images/s (est)")
        print(f"naive, one transaction: {lean_s:8.2f} s  {total / lean_s:10.0f} images/s (est)")
        print(f"runner / raw                   = {raw_s / runner_s:.2f}  (target >= 0.80)")
        print(f"runner / naive per product     = {naive_s / runner_s:.1f}x (target >= 15)")
        print(f"runner / naive one transaction = {lean_s / runner_s:.1f}x (no lock, not resumable)")


if __name__ == "__main__":
    main()
