"""Metadata enrichment throughput against a media server on loopback, in one run.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
      .venv/bin/python bench/enrich_throughput.py --images 1000 --latency-ms 30 --bandwidth-mbps 200

Creates a scratch database and one tenant whose products hold `--images` images (5 per
product) stored through LocalStorage. With `--latency-ms` or `--bandwidth-mbps` they are served
by bench/slow_media.py, the stand-in for R2 (every request delayed, every byte through one
shared link); without, by the app's own `/media` (uvicorn on loopback, Starlette's ranged
FileResponse). Reports, measured one after the other on the same objects:
  full GETs   the baseline: plain sequential GETs of every object (keep-alive), each parsed
              with Pillow, no writes
  enrich      `backfill enrich` at default settings (16 KiB first ranges, 16 at once, one
              dual-write transaction per batch of 100 products)
  issue 7     the same with issue 7's settings: 64 KiB first ranges, 8 at once, one dual-write
              transaction per product (what the batching, the smaller range and the
              concurrency buy together); skipped with --no-issue-7
with images/s, bytes and requests per image, fetch-wait and write seconds, and the ratios.
Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from io import BytesIO
from pathlib import Path
from unittest.mock import patch

import httpx
from PIL import Image as PillowImage
from scratch import scratch_database  # bench/scratch.py, beside this script
from sqlalchemy import Engine, text

from app.composition import build
from app.core import migrate
from app.core.database import tenant_schema
from app.core.settings import Settings
from app.services.product_image_service import ProductImageService
from app.services.tenant_service import create_tenant
from app.storage.local import LocalStorage
from backfill.enrich import EnrichOptions, Pending, TenantEnrichment, enrich_tenants
from backfill.enrich import run as enrich_run
from backfill.enrich.write import Answers, Written, write_batch
from backfill.runner import RunOptions, run_tenant

DISTINCT = 100  # distinct objects; the rest share their bytes (LocalStorage links them)
IMAGES_PER_PRODUCT = 5
WORKERS = 4  # uvicorn processes serving /media (one is CPU-bound at a few hundred requests/s)
ISSUE_7 = EnrichOptions(concurrency=8, head_bytes=64 * 1024)  # and one transaction per product


def photo(kind: str, width: int, height: int, seed: int) -> bytes:
    """A photo-like picture: a gradient with noise (compresses like a real photo)."""
    rng = random.Random(seed)
    base = PillowImage.linear_gradient("L").resize((width, height)).convert("RGB")
    noise = PillowImage.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    picture = PillowImage.blend(base, noise, 0.25)
    out = BytesIO()
    if kind == "jpeg":
        picture.save(out, "JPEG", quality=85)
    elif kind == "png":
        picture.save(out, "PNG")
    elif kind == "webp":
        picture.save(out, "WEBP", quality=80)
    else:
        picture.convert("P").save(out, "GIF")
    return out.getvalue()


def objects() -> list[tuple[str, bytes]]:
    """(extension, bytes): 70% JPEG 1600x1200, 15% PNG 1000x1000, 10% WebP, 5% GIF."""
    made = []
    for i in range(DISTINCT):
        if i % 20 < 14:
            made.append(("jpg", photo("jpeg", 1600, 1200, i)))
        elif i % 20 < 17:
            made.append(("png", photo("png", 1000, 1000, i)))
        elif i % 20 < 19:
            made.append(("webp", photo("webp", 1200, 900, i)))
        else:
            made.append(("gif", photo("gif", 400, 300, i)))
    return made


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str) -> None:
    for _ in range(200):
        try:
            httpx.get(url, trust_env=False)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def fill(engine: Engine, tenant: int, urls: list[str]) -> None:
    products = [urls[i : i + IMAGES_PER_PRODUCT] for i in range(0, len(urls), IMAGES_PER_PRODUCT)]
    with engine.begin() as connection:
        for number, group in enumerate(products):
            connection.execute(
                text(
                    f"INSERT INTO {tenant_schema(tenant)}.products (title, price, source, images) "
                    "VALUES (:title, 10, 'stoflow', CAST(:images AS jsonb))"
                ),
                {
                    "title": f"Bench item {number}",
                    "images": json.dumps([{"url": u, "order": k} for k, u in enumerate(group)]),
                },
            )
    assert run_tenant(engine, tenant, RunOptions()).status == "done"


def forget_metadata(engine: Engine, tenant: int) -> None:
    with engine.begin() as connection:
        schema = tenant_schema(tenant)
        connection.execute(
            text(
                f"UPDATE {schema}.product_images SET mime_type = NULL, file_size = NULL, "
                "width = NULL, height = NULL, alt_text = NULL"
            )
        )
        connection.execute(text(f"TRUNCATE {schema}.image_metadata_failures"))
    # The next run starts from tables as clean as the first run's, not from dead rows.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ("products", "product_images"):
            connection.execute(text(f"VACUUM (ANALYZE) {tenant_schema(tenant)}.{table}"))


def one_transaction_per_product(
    engine: Engine,
    service: ProductImageService,
    tenant_id: int,
    products: Mapping[int, Sequence[Pending]],
    answers: Answers,
    options: EnrichOptions,
) -> Written:
    """Issue 7's writes, in place of `write_batch`: every product in its own transaction."""
    written = Written()
    for product_id in sorted(products):
        one = {product_id: products[product_id]}
        written.add(write_batch(engine, service, tenant_id, one, answers, options))
    return written


class BatchTimes(logging.Handler):
    """Adds up the fetch-wait and write seconds of the `enrich.batch` events."""

    def __init__(self) -> None:
        super().__init__()
        self.fetch = 0.0
        self.write = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        event = record.msg if isinstance(record.msg, dict) else {}
        if event.get("event") == "enrich.batch":
            self.fetch += event["fetch_wait_seconds"]
            self.write += event["write_seconds"]


def timed_enrich(
    engine: Engine, settings: Settings, tenant: int, options: EnrichOptions
) -> dict[str, float]:
    """One enrichment of every image of `tenant`: its figures."""
    services = build(settings, engine)
    times = BatchTimes()
    logging.getLogger("backfill").addHandler(times)
    started = time.perf_counter()
    try:
        [result] = enrich_tenants(engine, services.images, [tenant], options)
    finally:
        seconds = time.perf_counter() - started
        logging.getLogger("backfill").removeHandler(times)
        services.close()
    assert result.status == "done" and result.failed == 0 and result.skipped == 0, result
    return figures(result, seconds, times)


def figures(result: TenantEnrichment, seconds: float, times: BatchTimes) -> dict[str, float]:
    return {
        "seconds": round(seconds, 2),
        "images_per_s": round(result.images / seconds, 1),
        "kib_read_per_image": round(result.bytes_read / result.fetched / 1024, 1),
        "requests_per_image": round(result.requests / result.fetched, 2),
        "write_transactions": result.transactions,
        "fetch_wait_seconds": round(times.fetch, 2),
        "write_seconds": round(times.write, 2),
    }


def full_gets(urls: list[str]) -> tuple[float, int]:
    """Sequential plain GETs of every object, each parsed with Pillow: seconds, bytes."""
    read = 0
    started = time.perf_counter()
    with httpx.Client(trust_env=False) as client:
        for url in urls:
            body = client.get(url).raise_for_status().content
            read += len(body)
            with PillowImage.open(BytesIO(body)) as image:
                assert image.size[0] > 0
    return time.perf_counter() - started, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=None, help="per request")
    parser.add_argument("--bandwidth-mbps", type=float, default=None, help="the shared link")
    parser.add_argument("--concurrency", type=int, default=EnrichOptions().concurrency)
    parser.add_argument("--no-issue-7", action="store_true", help="skip issue 7's settings")
    args = parser.parse_args()
    count = args.images - args.images % IMAGES_PER_PRODUCT
    stand_in = args.latency_ms is not None or args.bandwidth_mbps is not None
    with scratch_database() as engine, tempfile.TemporaryDirectory() as folder:
        migrate.upgrade(engine, lock_retries=0)
        tenant = create_tenant(engine, email="bench@example.com").id
        port = free_port()
        base = f"http://127.0.0.1:{port}/media"
        settings = Settings(
            app_env="development",
            database_url=engine.url.render_as_string(hide_password=False).replace(
                "postgresql+psycopg://", "postgresql://"
            ),
            data_dir=Path(folder) / "data",
            media_root=Path(folder) / "media",
            media_base_url=base,
            log_level="WARNING",
        )
        storage = LocalStorage(settings.resolved_media_root, base)
        made = objects()
        urls = []
        for i in range(count):
            extension, body = made[i % DISTINCT]
            urls.append(storage.put(f"bench/{i}.{extension}", body, content_type="x").url)
        mean_size = sum(len(body) for _, body in made) / len(made)
        fill(engine, tenant, urls)
        if stand_in:
            server = subprocess.Popen(
                [
                    *(sys.executable, str(Path(__file__).with_name("slow_media.py"))),
                    *("--root", str(settings.resolved_media_root), "--port", str(port)),
                    *("--latency-ms", str(args.latency_ms or 0)),
                    *(
                        ("--bandwidth-mbps", str(args.bandwidth_mbps))
                        if args.bandwidth_mbps
                        else ()
                    ),
                ]
            )
            ready = f"{base}/{urls[0].removeprefix(base + '/')}"
        else:
            server = subprocess.Popen(
                [
                    *(sys.executable, "-m", "uvicorn", "app.asgi:app", "--port", str(port)),
                    *("--host", "127.0.0.1", "--log-level", "warning", "--workers", str(WORKERS)),
                ],
                env={
                    **os.environ,
                    "DATABASE_URL": settings.database_url or "",
                    "DATA_DIR": str(settings.data_dir),
                    "MEDIA_ROOT": str(settings.resolved_media_root),
                    "MEDIA_BASE_URL": base,
                    "LOG_LEVEL": "WARNING",
                },
            )
            ready = f"http://127.0.0.1:{port}/healthz"
        try:
            wait_for(ready)
            plain_seconds, plain_bytes = full_gets(urls)
            enrich = timed_enrich(
                engine, settings, tenant, EnrichOptions(concurrency=args.concurrency)
            )
            before = None
            if not args.no_issue_7:
                forget_metadata(engine, tenant)
                with patch.object(enrich_run, "write_batch", one_transaction_per_product):
                    before = timed_enrich(engine, settings, tenant, ISSUE_7)
        finally:
            server.terminate()
            server.wait(timeout=10)
    report: dict[str, object] = {
        "images": count,
        "server": "bench/slow_media.py" if stand_in else "the app's /media",
        "latency_ms": args.latency_ms,
        "bandwidth_mbps": args.bandwidth_mbps,
        "mean_object_kib": round(mean_size / 1024, 1),
        "full_gets": {
            "seconds": round(plain_seconds, 2),
            "images_per_s": round(count / plain_seconds, 1),
            "kib_read_per_image": round(plain_bytes / count / 1024, 1),
        },
        "enrich": enrich,
        "enrich_vs_full_gets": round(plain_seconds / enrich["seconds"], 2),
        "bytes_ratio_full_vs_enrich": round(
            plain_bytes / count / 1024 / enrich["kib_read_per_image"], 1
        ),
    }
    if before is not None:
        report["issue_7"] = before
        report["issue_7_vs_full_gets"] = round(plain_seconds / before["seconds"], 2)
        report["enrich_vs_issue_7"] = round(before["seconds"] / enrich["seconds"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
