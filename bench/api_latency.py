"""Latency budgets under traffic, measured against a real API process on loopback, ratios
from the same run (issue 11):

1. dual-write overhead: POST / DELETE / reorder with dual-write on vs off (the JSONB-only
   path), on distinct products of the same shape;
2. read paths: GET .../images and the Vinted payload from the table vs the JSONB, and with
   shadow comparison on;
3. the API under a backfill: a steady mixed load from a separate process (bench/load.py)
   without a backfill, then while `python -m backfill run` migrates a large tenant; and the
   backfill's rate with and without the load;
5. peak RSS of the API worker and of the backfill process.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
      .venv/bin/python bench/api_latency.py --big-products 200000

Needs DATABASE_URL pointing at a server where it may create a scratch database.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests' helpers, below

import httpx
from scratch import (  # bench/scratch.py, beside this script
    fill_products,
    scratch_database,
    serve_api,
)
from sqlalchemy import Engine, text

from app.core import migrate
from app.core.database import tenant_schema
from app.core.security import issue_token, now_utc
from app.core.settings import PROJECT_ROOT, get_settings
from app.services.tenant_service import create_tenant
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant
from tests.console.browser import free_port
from tests.flags.test_client import write_toggles

SMALL_TENANTS = 10
PRODUCTS = 40


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:7.2f} ms  "
        f"p99 {pct(values, 0.99) * 1000:7.2f} ms  (n={len(values)})"
    )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def set_dual_write(path: Path, on: bool, read_table: list[int], shadow: list[int]) -> None:
    write_toggles(path, [str(t) for t in read_table], shadow_tenants=[str(t) for t in shadow])
    data = json.loads(path.read_text())
    for feature in data["features"]:
        if feature["name"] == "product-images.dual-write":
            feature["enabled"] = on
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)  # atomic: the API's watcher never reads half a file
    time.sleep(2.5)  # the API's watcher reloads the file within a second


def product_ids(engine: Engine, tenant: int) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text(f"SELECT id FROM {tenant_schema(tenant)}.products ORDER BY id")
            ).scalars()
        )


def write_and_read_paths(  # 1. and 2.
    args: argparse.Namespace,
    engine: Engine,
    tenants: list[int],
    toggles: Path,
    base: str,
    call: Any,
) -> None:
    writes: dict[str, dict[str, list[float]]] = {
        "on": {"post": [], "delete": [], "reorder": []},
        "off": {"post": [], "delete": [], "reorder": []},
    }
    half = PRODUCTS // 2
    for block in range(4):
        for mode in ("on", "off"):
            set_dual_write(toggles, mode == "on", [], [])
            for i in range(args.rounds // 4):
                tenant = tenants[i % len(tenants)]
                ids = product_ids(engine, tenant)
                pool = ids[:half] if mode == "on" else ids[half:]
                product = pool[(block * 31 + i) % len(pool)]
                t, added = call(
                    "POST",
                    f"/api/products/{product}/images",
                    tenant,
                    json={"url": f"{base}/extra-{block}-{i}.jpg"},
                )
                writes[mode]["post"].append(t)
                _, listed = call("GET", f"/api/products/{product}/images", tenant)
                order = [img["id"] for img in listed.json()["images"]][::-1]
                t, _ = call(
                    "PUT",
                    f"/api/products/{product}/images/order",
                    tenant,
                    json={"image_ids": order},
                )
                writes[mode]["reorder"].append(t)
                t, _ = call(
                    "DELETE", f"/api/products/{product}/images/{added.json()['id']}", tenant
                )
                writes[mode]["delete"].append(t)
    print("1. dual-write overhead (on / off)")
    for op in ("post", "delete", "reorder"):
        on, off = writes["on"][op], writes["off"][op]
        print(f"   {op:8} on : {summary(on)}")
        print(f"   {op:8} off: {summary(off)}")
        print(
            f"   {op:8} ratio median {statistics.median(on) / statistics.median(off):.2f}"
            f" (<= 1.3), p99 {pct(on, 0.99) / pct(off, 0.99):.2f} (<= 1.5)"
        )

    # Restore: dual-write on, backfill what the kill switch dropped, verify.
    set_dual_write(toggles, True, [], [])
    for tenant in tenants:
        run_tenant(engine, tenant, RunOptions())
        assert verify_tenant(engine, tenant).is_verified

    # 2. read paths.
    reads: dict[str, dict[str, list[float]]] = {}
    for variant, read_table, shadow in (
        ("jsonb", [], []),
        ("table", tenants, []),
        ("shadow", [], tenants),
    ):
        set_dual_write(toggles, True, read_table, shadow)
        reads[variant] = {"images": [], "vinted": []}
        for i in range(args.rounds):
            tenant = tenants[i % len(tenants)]
            product = product_ids(engine, tenant)[i % PRODUCTS]
            t, response = call("GET", f"/api/products/{product}/images", tenant)
            assert response.headers["x-images-read-path"] == (
                "table" if variant == "table" else "jsonb"
            )
            reads[variant]["images"].append(t)
            t, _ = call("GET", f"/api/products/{product}/marketplaces/vinted", tenant)
            reads[variant]["vinted"].append(t)
    print("2. read paths")
    for kind in ("images", "vinted"):
        for variant in ("jsonb", "table", "shadow"):
            print(f"   {kind:7} {variant:7}: {summary(reads[variant][kind])}")
        jsonb = statistics.median(reads["jsonb"][kind])
        table_ratio = statistics.median(reads["table"][kind]) / jsonb
        shadow_ratio = statistics.median(reads["shadow"][kind]) / jsonb
        print(
            f"   {kind:7} table/jsonb median {table_ratio:.2f} (<= 1.1); "
            f"shadow/jsonb {shadow_ratio:.2f} (<= 2)"
        )
    set_dual_write(toggles, True, [], [])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-products", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--load-seconds", type=float, default=30)
    parser.add_argument(
        "--only-backfill", action="store_true", help="skip 1 and 2 (write and read paths)"
    )
    parser.add_argument(
        "--yield-ratio", type=float, default=None, help="the backfill's --yield-ratio"
    )
    args = parser.parse_args()
    secret = get_settings().jwt_secret
    with scratch_database() as engine, tempfile.TemporaryDirectory() as tmp:
        migrate.upgrade(engine)
        port = free_port()
        base = f"http://127.0.0.1:{port}/media"
        tenants = [
            create_tenant(engine, email=f"t{i}@example.com").id for i in range(SMALL_TENANTS)
        ]
        for tenant in tenants:
            with engine.begin() as connection:
                connection.execute(
                    text(
                        f"INSERT INTO {tenant_schema(tenant)}.products "
                        "(title, price, source, images) "
                        "SELECT 'item ' || g, 10, 'pythonApiWOO', (SELECT jsonb_agg("
                        "jsonb_build_object('url', :base || '/' || g || '-' || k || '.jpg', "
                        "'order', k)) FROM generate_series(0, 4) k) "
                        "FROM generate_series(1, :n) g"
                    ),
                    {"base": base, "n": PRODUCTS},
                )
            run_tenant(engine, tenant, RunOptions())
            assert verify_tenant(engine, tenant).is_verified
        tokens = {
            t: issue_token(secret, user_id=t, ttl=timedelta(hours=2), now=now_utc())
            for t in tenants
        }
        toggles = Path(tmp) / "toggles.json"
        set_dual_write(toggles, True, [], [])
        with serve_api(engine, port=port, toggles=toggles, media_root=Path(tmp) / "media") as api:
            url, env = api.url, api.env
            client = httpx.Client(base_url=url, timeout=10)

            def call(
                method: str, path: str, tenant: int, **kw: object
            ) -> tuple[float, httpx.Response]:
                started = time.perf_counter()
                response = client.request(
                    method, path, headers={"Authorization": f"Bearer {tokens[tenant]}"}, **kw
                )
                elapsed = time.perf_counter() - started
                assert response.status_code < 400, (path, response.status_code, response.text)
                return elapsed, response

            if not args.only_backfill:
                write_and_read_paths(args, engine, tenants, toggles, base, call)

            # 3. the API under a backfill of a big tenant.
            big = create_tenant(engine, email="big@example.com").id
            fill_products(engine, big, args.big_products, 5)
            targets = Path(tmp) / "targets.json"
            targets.write_text(
                json.dumps(
                    [[tokens[t], p, base] for t in tenants for p in product_ids(engine, t)[:10]]
                )
            )

            def load() -> dict[str, object]:
                out = subprocess.run(
                    [
                        sys.executable,
                        str(PROJECT_ROOT / "bench" / "load.py"),
                        "--url",
                        url,
                        "--targets",
                        str(targets),
                        "--seconds",
                        str(args.load_seconds),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result: dict[str, object] = json.loads(out.stdout)
                return result

            def backfill() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    [sys.executable, "-m", "backfill", "run", "--tenant", str(big)]
                    + (
                        ["--yield-ratio", str(args.yield_ratio)]
                        if args.yield_ratio is not None
                        else []
                    ),
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )

            def wait_rss(process: subprocess.Popen[bytes]) -> float:
                peak = 0.0
                while process.poll() is None:
                    try:
                        peak = max(peak, peak_rss_mb(process.pid))
                    except OSError:
                        break
                    time.sleep(0.2)
                return peak

            quiet = load()
            started = time.perf_counter()
            alone = backfill()
            alone_rss = wait_rss(alone)
            alone_s = time.perf_counter() - started
            with engine.begin() as connection:
                schema = tenant_schema(big)
                connection.execute(
                    text(
                        f"TRUNCATE {schema}.product_images, {schema}.rejected_image_elements, "
                        f"{schema}.backfill_runs CASCADE"  # and its key ranges
                    )
                )
            started = time.perf_counter()
            loaded = backfill()
            busy = load()
            loaded_rss = wait_rss(loaded)
            loaded_s = time.perf_counter() - started
            images = args.big_products * 5
            verified = verify_tenant(engine, big).is_verified
            print("3. API under backfill (mixed load: 80% reads, 20% reorders, 10 tenants)")
            for name, result in (("without", quiet), ("during", busy)):
                lat = result["latencies"]  # type: ignore[index]
                print(
                    f"   {name:8} reads {summary(lat['read'])}; writes {summary(lat['write'])};"
                    f" errors {len(result['errors'])}"  # type: ignore[arg-type]
                )
            q_all = quiet["latencies"]["read"] + quiet["latencies"]["write"]  # type: ignore[index]
            b_all = busy["latencies"]["read"] + busy["latencies"]["write"]  # type: ignore[index]
            print(f"   p99 during / without = {pct(b_all, 0.99) / pct(q_all, 0.99):.2f} (<= 1.5)")
            print(
                f"   backfill alone {images / alone_s:,.0f} images/s; under load "
                f"{images / loaded_s:,.0f} images/s; verify after: {verified}"
            )
            print("5. peak RSS")
            print(f"   API worker: {peak_rss_mb(api.process.pid):.0f} MB")
            print(
                f"   backfill process ({images:,} images): {alone_rss:.0f} MB alone, "
                f"{loaded_rss:.0f} MB under load"
            )


if __name__ == "__main__":
    main()
