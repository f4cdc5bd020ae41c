"""Scale as a curve (issue 21, item 6): the backfill's rate and the API's p99 read latency at
10k, 100k, 1M and 10M images, each size in its own scratch database, with the raw
INSERT ... SELECT baselines timed in the same run so each size also reads as ratios.

    flock /tmp/bench.lock .venv/bin/python bench/scale_curve.py
    .venv/bin/python bench/scale_curve.py --sizes 10000,100000   # a subset
    .venv/bin/python bench/scale_curve.py --plot-only            # redraw from the JSON

For each size (5 images per product, every fifth product from pythonApiWOO):
  plain   one INSERT ... SELECT of (product_id, url, order) from jsonb_array_elements into the
          real product_images table: the work every projection must do (item 1's baseline)
  raw     one INSERT ... SELECT of the full projection over every product
  runner  backfill.runner.run_tenant at default settings (the rate the curve is about)
then, on the runner's rows, a full verify (the read-table flag is honoured only for a
verified tenant), and the real API (`python -m app serve` on a loopback port) answering
GET /api/products/{id}/images for random products, sequentially: before the switch (reads
from the JSONB) and after it (read-table on: reads from the table), alternating blocks.

Writes docs/scale_curve.json (a run of some sizes replaces those sizes and keeps the others)
and docs/scale_curve.png (needs matplotlib: `pip install -e '.[bench]'`). Needs DATABASE_URL
pointing at a server where it may create and drop scratch databases.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests' helpers, below

import httpx
from api_latency import pct, set_dual_write  # bench/, beside this script
from backfill_throughput import LEGACY, clear, plain, raw, timed
from scratch import fill_products, scratch_database, serve_api
from sqlalchemy import Engine, text

from app.api.products.images import READ_PATH_HEADER
from app.core import migrate
from app.core.database import tenant_schema
from app.core.security import issue_token, now_utc
from app.core.settings import PROJECT_ROOT, get_settings
from app.services.tenant_service import create_tenant
from backfill.projection import PROJECT_PRODUCTS_SQL, prepare_projection
from backfill.runner import RunOptions, TenantResult, run_tenant
from backfill.verify import verify_tenant
from tests.console.browser import free_port

SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
IMAGES_EACH = 5
FLATNESS_TARGET = 1.3  # max rate / min rate across the sizes
STEPS = ("plain", "raw", "runner")
LABELS = {
    "plain": "plain INSERT ... SELECT (url, order)",
    "raw": "raw projection INSERT ... SELECT",
    "runner": "backfill runner",
}
READ_PATHS = ("jsonb", "table")  # before the switch, after it
JSON_PATH = PROJECT_ROOT / "docs" / "scale_curve.json"
PNG_PATH = PROJECT_ROOT / "docs" / "scale_curve.png"


def measure(images: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of one size, in a scratch database of its own."""
    products = images // IMAGES_EACH
    rounds = args.repeat if images < args.single_round_from else 1
    figures: dict[str, Any] = {
        "images": images,
        "products": products,
        "rounds": rounds,
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "load_before": list(os.getloadavg()),
    }
    with scratch_database() as engine, tempfile.TemporaryDirectory() as tmp:
        migrate.upgrade(engine)
        tenant = create_tenant(engine, email="scale@example.com").id
        started = time.perf_counter()
        fill_products(engine, tenant, products, IMAGES_EACH)
        _vacuum(engine, f"{tenant_schema(tenant)}.products")  # every step scans it settled
        figures["fill_seconds"] = round(time.perf_counter() - started, 2)
        results: list[TenantResult] = []

        def runner() -> None:
            result = run_tenant(engine, tenant, RunOptions(legacy_sources=LEGACY))
            assert result.status == "done" and result.images_inserted == images, result
            results.append(result)

        steps = {
            "plain": lambda: plain(engine, tenant, "product_images"),
            "raw": lambda: raw(engine, tenant),
            "runner": runner,
        }
        wall: dict[str, list[float]] = {step: [] for step in STEPS}
        cpu: dict[str, list[float]] = {step: [] for step in STEPS}
        for _ in range(rounds):
            for step in STEPS:  # the runner last: its rows stay for verify and the reads
                clear(engine, tenant)
                seconds, cpu_seconds = timed(engine, steps[step])
                wall[step].append(round(seconds, 3))
                if cpu_seconds is not None:
                    cpu[step].append(round(cpu_seconds, 3))
            print(f"  {images:>10,} images, round: " + _round_line(wall, images), flush=True)
        figures["seconds"] = wall
        figures["cpu_seconds"] = cpu
        figures["rate"] = {s: round(images / statistics.median(wall[s])) for s in STEPS}
        if all(cpu.values()):
            figures["cpu_rate"] = {s: round(images / statistics.median(cpu[s])) for s in STEPS}
        figures["ratio"] = {
            "runner_plain": _median_ratio(wall["plain"], wall["runner"]),
            "runner_raw": _median_ratio(wall["raw"], wall["runner"]),
        }
        figures["runner"] = {  # per round
            key: [getattr(result, key) for result in results]
            for key in ("batches", "yields", "throttles", "lock_timeouts")
        }
        figures["server"] = _server(engine)
        figures["last_batch"] = last_batch(engine, tenant, min(1000, products // 2))
        started = time.perf_counter()
        _vacuum(engine, f"{tenant_schema(tenant)}.product_images")
        figures["vacuum_seconds"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        report = verify_tenant(engine, tenant)
        assert report.is_verified, report.mismatches[:3]
        figures["verify_seconds"] = round(time.perf_counter() - started, 2)
        figures["table_bytes"] = _table_bytes(engine, tenant)
        reads = read_latencies(engine, tenant, Path(tmp), args.requests)
        figures["requests"] = {path: len(reads[path]) for path in READ_PATHS}
        figures["p50_ms"] = {p: round(statistics.median(reads[p]) * 1000, 2) for p in READ_PATHS}
        figures["p99_ms"] = {p: round(pct(reads[p], 0.99) * 1000, 2) for p in READ_PATHS}
    figures["load_after"] = list(os.getloadavg())
    return figures


def read_latencies(engine: Engine, tenant: int, tmp: Path, requests: int) -> dict[str, list[float]]:
    """Seconds per GET .../images of a random product, on the JSONB path (before the switch)
    and the table path (after it), in alternating blocks; each block after a warm-up."""
    with engine.connect() as connection:
        low, high = connection.execute(
            text(f"SELECT min(id), max(id) FROM {tenant_schema(tenant)}.products")
        ).one()
    token = issue_token(
        get_settings().jwt_secret, user_id=tenant, ttl=timedelta(hours=2), now=now_utc()
    )
    headers = {"Authorization": f"Bearer {token}"}
    toggles = tmp / "toggles.json"
    set_dual_write(toggles, True, [], [])
    rng = random.Random(21)
    blocks = 2
    seconds: dict[str, list[float]] = {path: [] for path in READ_PATHS}
    with (
        serve_api(engine, port=free_port(), toggles=toggles, media_root=tmp / "media") as api,
        httpx.Client(base_url=api.url, timeout=30) as client,
    ):

        def read(expected: str) -> float:
            started = time.perf_counter()
            response = client.get(f"/api/products/{rng.randint(low, high)}/images", headers=headers)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, (response.status_code, response.text)
            assert response.headers[READ_PATH_HEADER] == expected, response.headers
            return elapsed

        for _ in range(blocks):
            for path in READ_PATHS:
                set_dual_write(toggles, True, [tenant] if path == "table" else [], [])
                for _ in range(20):  # warm-up: the pool's connections, the plan caches
                    read(path)
                seconds[path] += [read(path) for _ in range(requests // blocks)]
    return seconds


def last_batch(engine: Engine, tenant: int, products: int) -> dict[str, Any]:
    """Where one batch's time goes with the table at its full size: the last `products`
    products' rows deleted and projected again under EXPLAIN (ANALYZE, BUFFERS, WAL), in one
    transaction rolled back (the table is left as it was)."""
    with engine.connect() as connection, connection.begin() as transaction:
        connection.execute(text(f"SET LOCAL search_path TO {tenant_schema(tenant)}, public"))
        connection.execute(text("SET LOCAL track_io_timing = on"))
        ids = list(
            connection.execute(
                text("SELECT id FROM products ORDER BY id DESC LIMIT :n"), {"n": products}
            ).scalars()
        )
        connection.execute(
            text("DELETE FROM product_images WHERE product_id = ANY(:ids)"), {"ids": ids}
        )
        prepare_projection(connection)
        [explained] = connection.execute(
            text(f"EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) {PROJECT_PRODUCTS_SQL}"),
            {"product_ids": ids, "legacy_sources": list(LEGACY)},
        ).scalar_one()
        transaction.rollback()
    plan = explained["Plan"]
    return {
        "products": products,
        "ms": round(explained["Execution Time"], 1),
        "triggers_ms": round(sum(t["Time"] for t in explained.get("Triggers", [])), 1),
        **{
            key.lower().replace("i/o", "io").replace(" ", "_"): plan.get(key, 0)
            for key in (
                "Shared Hit Blocks",
                "Shared Read Blocks",
                "Shared Dirtied Blocks",
                "Shared Written Blocks",
                "I/O Read Time",
                "I/O Write Time",
                "WAL Records",
                "WAL FPI",
                "WAL Bytes",
            )
        },
    }


def _vacuum(engine: Engine, table: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"VACUUM (ANALYZE) {table}"))


def _server(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        return {
            name: str(connection.execute(text(f"SHOW {name}")).scalar_one())
            for name in ("server_version", "shared_buffers", "max_wal_size", "work_mem")
        }


def _table_bytes(engine: Engine, tenant: int) -> dict[str, int]:
    """On-disk size (with indexes and TOAST) of the tenant's two tables, backfilled."""
    schema = tenant_schema(tenant)
    with engine.connect() as connection:
        return {
            table: int(
                connection.execute(
                    text("SELECT pg_total_relation_size(to_regclass(:name))"),
                    {"name": f"{schema}.{table}"},
                ).scalar_one()
            )
            for table in ("products", "product_images")
        }


def _median_ratio(baseline: list[float], measured: list[float]) -> float:
    """Median over the rounds of baseline time / measured time (a throughput ratio)."""
    return round(statistics.median(b / m for b, m in zip(baseline, measured, strict=True)), 3)


def _round_line(wall: dict[str, list[float]], images: int) -> str:
    return ", ".join(f"{s} {images / wall[s][-1]:,.0f}/s" for s in STEPS)


def load_figures() -> dict[str, Any]:
    if JSON_PATH.exists():
        figures: dict[str, Any] = json.loads(JSON_PATH.read_text())
        return figures
    return {"images_per_product": IMAGES_EACH, "machine": f"{os.cpu_count()} cores", "sizes": {}}


def flatness(sizes: list[dict[str, Any]], rate: Any) -> float:
    """Max over min of `rate(size)` across the sizes: 1.0 is perfectly flat."""
    values = [float(rate(size)) for size in sizes]
    return round(max(values) / min(values), 3)


def summarise(figures: dict[str, Any]) -> None:
    sizes = [figures["sizes"][key] for key in sorted(figures["sizes"], key=int)]
    print(
        f"{'images':>11} {'plain/s':>9} {'raw/s':>9} {'runner/s':>9} {'cpu/s':>9} "
        f"{'r/plain':>7} {'r/raw':>6} {'verify s':>8} {'p99 jsonb':>9} {'p99 table':>9}"
    )
    for size in sizes:
        rate, ratio, p99 = size["rate"], size["ratio"], size["p99_ms"]
        cpu = size.get("cpu_rate", {}).get("runner", 0)
        print(
            f"{size['images']:>11,} {rate['plain']:>9,} {rate['raw']:>9,} {rate['runner']:>9,} "
            f"{cpu:>9,} {ratio['runner_plain']:>7.2f} {ratio['runner_raw']:>6.2f} "
            f"{size['verify_seconds']:>8.1f} {p99['jsonb']:>7.1f}ms {p99['table']:>7.1f}ms"
        )
    print("one batch at full size (EXPLAIN ANALYZE of the projection, rolled back):")
    for size in (size for size in sizes if "last_batch" in size):
        batch = size["last_batch"]
        print(
            f"{size['images']:>11,} {batch['products']:,} products {batch['ms']:8.1f} ms "
            f"(FK {batch['triggers_ms']:.1f}); blocks hit {batch['shared_hit_blocks']:,} "
            f"read {batch['shared_read_blocks']:,} dirtied {batch['shared_dirtied_blocks']:,} "
            f"written {batch['shared_written_blocks']:,}; WAL FPI {batch['wal_fpi']:,}, "
            f"{batch['wal_bytes'] / 2**20:.1f} MiB"
        )
    if len(sizes) < 2:
        return
    wall = flatness(sizes, lambda s: s["rate"]["runner"])
    verdict = "met" if wall <= FLATNESS_TARGET else "missed"
    print(
        f"runner rate, max / min across sizes: {wall:.2f}x "
        f"(target <= {FLATNESS_TARGET}x: {verdict})"
    )
    if all("cpu_rate" in s for s in sizes):
        print(f"  by CPU time: {flatness(sizes, lambda s: s['cpu_rate']['runner']):.2f}x")
    print(f"  runner / plain: {flatness(sizes, lambda s: s['ratio']['runner_plain']):.2f}x")
    print(f"  plain baseline: {flatness(sizes, lambda s: s['rate']['plain']):.2f}x")


def plot(figures: dict[str, Any]) -> None:
    """docs/scale_curve.png: the rates, the runner's ratios to its baselines, the p99s."""
    try:
        import matplotlib
    except ImportError as missing:
        raise SystemExit("the plot needs matplotlib: pip install -e '.[bench]'") from missing
    matplotlib.use("Agg")  # files only, no display
    from matplotlib import pyplot

    sizes = [figures["sizes"][key] for key in sorted(figures["sizes"], key=int)]
    x = [size["images"] for size in sizes]
    figure, (rates, ratios, latency) = pyplot.subplots(1, 3, figsize=(15, 4.6))
    for step, style in (("runner", "o-"), ("raw", "s--"), ("plain", "^:")):
        rates.plot(x, [s["rate"][step] for s in sizes], style, label=LABELS[step])
    if all("cpu_rate" in s for s in sizes):  # the steadier figure on a shared machine
        cpu = [s["cpu_rate"]["runner"] for s in sizes]
        rates.plot(x, cpu, "o-", color="tab:purple", label="backfill runner, per CPU second")
    runner = [s["rate"]["runner"] for s in sizes]
    low = min(runner)
    rates.axhspan(low, low * FLATNESS_TARGET, color="tab:blue", alpha=0.08, label="min x 1.3")
    rates.set_title("Backfill rate (images/s; wall unless marked)")
    rates.set_ylim(bottom=0)
    for key, label in (("runner_plain", "runner / plain"), ("runner_raw", "runner / raw")):
        ratios.plot(x, [s["ratio"][key] for s in sizes], "o-", label=label)
    ratios.axhline(0.5, color="grey", linestyle=":", label="item 1 target (0.5)")
    ratios.set_title("Runner / baseline (same run)")
    ratios.set_ylim(0, 1.2)
    for path, label in (("jsonb", "JSONB (before the switch)"), ("table", "table (after it)")):
        latency.plot(x, [s["p99_ms"][path] for s in sizes], "o-", label=label)
    latency.set_title("API p99, GET /api/products/{id}/images (ms)")
    latency.set_ylim(bottom=0)
    for axis in (rates, ratios, latency):
        axis.set_xscale("log")
        axis.set_xlabel("images in the tenant (5 per product)")
        axis.set_xticks(x, [_short(n) for n in x])
        axis.minorticks_off()
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower left")
    if len(sizes) > 1:
        spread = flatness(sizes, lambda s: s["rate"]["runner"])
        by_cpu = (
            f", per CPU second {flatness(sizes, lambda s: s['cpu_rate']['runner']):.2f}x"
            if all("cpu_rate" in s for s in sizes)
            else ""
        )
        figure.suptitle(
            f"Scale curve (issue 21, item 6): runner rate max / min = {spread:.2f}x wall"
            f"{by_cpu} (target <= {FLATNESS_TARGET}x); {figures['machine']}, PostgreSQL on "
            "loopback"
        )
    figure.tight_layout()
    figure.savefig(PNG_PATH, dpi=110)
    print(f"wrote {PNG_PATH.relative_to(PROJECT_ROOT)}")


def _short(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1_000}k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default=",".join(str(n) for n in SIZES),
        help="images per tenant, comma-separated (default: %(default)s)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds per size (median)")
    parser.add_argument(
        "--single-round-from",
        type=int,
        default=10_000_000,
        help="sizes from this many images run one round (default: %(default)s)",
    )
    parser.add_argument("--requests", type=int, default=1000, help="measured reads per path")
    parser.add_argument("--plot-only", action="store_true", help="redraw from the JSON")
    args = parser.parse_args()
    figures = load_figures()
    if not args.plot_only:
        for images in (int(size) for size in args.sizes.split(",")):
            if images % IMAGES_EACH:
                raise SystemExit(f"--sizes: {images} is not a multiple of {IMAGES_EACH}")
            print(f"{images:,} images ({images // IMAGES_EACH:,} products)", flush=True)
            figures["sizes"][str(images)] = measure(images, args)
            JSON_PATH.write_text(json.dumps(figures, indent=1) + "\n")  # each size as it ends
    summarise(figures)
    plot(figures)


if __name__ == "__main__":
    main()
