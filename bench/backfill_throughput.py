"""Backfill throughput against its baselines, and verify against the backfill, measured in
one process on one database.

    .venv/bin/python bench/backfill_throughput.py --products 200000 --images 5

Reports ratios (absolute times drift on shared machines):
  runner / plain    the backfill at default settings vs one plain INSERT ... SELECT of
                    (product_id, url, order) from jsonb_array_elements into the real
                    product_images table, with its indexes and foreign key: the work every
                    projection must do (target >= 0.5); also timed into an unindexed copy
  runner / raw      vs one raw INSERT ... SELECT of the same projection over all products
  verify / runner   a full verify of the backfilled tenant vs the backfill (target <= 0.5)
  runner / naive    vs a row-by-row loop with the runner's guarantees (per product: one
                    transaction under its row lock, normalise in Python, one INSERT per image),
                    timed on a sample and extrapolated (target >= 15); also reported: the
                    leanest loop (one transaction, no lock, not resumable)
--repeat N times plain, raw, runner and verify N times in turn and reports each ratio's median
(and range). Needs DATABASE_URL pointing at a server where it may create and drop a scratch
database.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
from backfill.verify import verify_tenant

LEGACY = ("pythonApiWOO",)


def clear(engine, tenant: int) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as connection:
        schema = tenant_schema(tenant)
        # CASCADE: and whatever records a run (its key ranges: backfill_ranges).
        connection.execute(
            text(
                f"TRUNCATE {schema}.product_images, {schema}.rejected_image_elements, "
                f"{schema}.backfill_runs CASCADE"
            )
        )
        connection.execute(text("CHECKPOINT"))


# The work every projection must do: each element of every array, as a row of its product
# with its url and position. The id is random (the table has no default for it): the primary
# key's inserts are as random as the projection's UUIDv3s.
PLAIN = (
    'INSERT INTO {table} (id, product_id, url, "order") '
    "SELECT gen_random_uuid(), p.id, el.e ->> 'url', el.ord - 1 FROM products AS p "
    "CROSS JOIN LATERAL jsonb_array_elements(p.images) WITH ORDINALITY AS el(e, ord) "
    "WHERE jsonb_typeof(p.images) = 'array'"
)
COPY_TABLE = "plain_copy"


def plain(engine, tenant: int, table: str) -> None:  # type: ignore[no-untyped-def]
    """One plain INSERT ... SELECT of every element into `table`, one transaction."""
    with engine.begin() as connection:
        connection.execute(text(f"SET LOCAL search_path TO {tenant_schema(tenant)}, public"))
        connection.execute(text(PLAIN.format(table=table)))


def make_unindexed_copy(engine, tenant: int) -> None:  # type: ignore[no-untyped-def]
    """product_images' columns and defaults, without its indexes, constraints or trigger."""
    schema = tenant_schema(tenant)
    with engine.begin() as connection:
        connection.execute(
            text(
                f"CREATE TABLE {schema}.{COPY_TABLE} "
                f"(LIKE {schema}.product_images INCLUDING DEFAULTS)"
            )
        )


def clear_copy(engine, tenant: int) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tenant_schema(tenant)}.{COPY_TABLE}"))
        connection.execute(text("CHECKPOINT"))


def verify(engine, tenant: int) -> None:  # type: ignore[no-untyped-def]
    report = verify_tenant(engine, tenant)
    assert report.is_verified, report.mismatches[:3]


def raw(engine, tenant: int) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as connection:
        connection.execute(text(f"SET LOCAL search_path TO {tenant_schema(tenant)}, public"))
        ids = list(connection.execute(text("SELECT id FROM products ORDER BY id")).scalars())
        project_products(connection, ids, LEGACY)


def runner(engine, tenant: int) -> None:  # type: ignore[no-untyped-def]
    result = run_tenant(engine, tenant, RunOptions(legacy_sources=LEGACY))
    assert result.status == "done"


def timed(engine, step) -> tuple[float, float | None]:  # type: ignore[no-untyped-def]
    """Wall seconds of `step()`, and CPU seconds spent on it: this process's plus the
    database's client backends' (read from /proc when the server is on this machine, else
    None). CPU time is the steadier figure when other work shares the cores."""
    before = _backend_cpu(engine)
    client = time.process_time()
    started = time.perf_counter()
    step()
    wall = time.perf_counter() - started
    after = _backend_cpu(engine)
    if before is None or after is None:
        return wall, None
    server = sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
    return wall, server + time.process_time() - client


def _backend_cpu(engine) -> dict[int, float] | None:  # type: ignore[no-untyped-def]
    """user + system CPU seconds of each client backend connected to the scratch database
    (the runner's and verify's connections stay open in the engine's pool)."""
    with engine.connect() as connection:
        pids = connection.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend'"
            )
        ).scalars()
        seconds: dict[int, float] = {}
        try:
            for pid in pids:
                with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                seconds[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return None
    return seconds


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


STEPS = {
    "plain": "plain INSERT, real table",
    "plain_copy": "plain INSERT, unindexed",
    "raw": "raw projection INSERT",
    "runner": "backfill runner",
    "verify": "verify (full)",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=200_000)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--naive-sample", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    with scratch_database() as engine:
        migrate.upgrade(engine)
        tenant = create_tenant(engine, email="bench@example.com").id
        fill_products(engine, tenant, args.products, args.images)
        make_unindexed_copy(engine, tenant)
        total = args.products * args.images
        wall: dict[str, list[float]] = {key: [] for key in STEPS}
        cpu: dict[str, list[float]] = {key: [] for key in STEPS}
        steps = {
            "plain": lambda: plain(engine, tenant, "product_images"),
            "plain_copy": lambda: plain(engine, tenant, COPY_TABLE),
            "raw": lambda: raw(engine, tenant),
            "runner": lambda: runner(engine, tenant),
            "verify": lambda: verify(engine, tenant),  # of the runner's rows
        }
        for _ in range(args.repeat):
            for key, step in steps.items():
                if key != "verify":
                    clear(engine, tenant)
                    clear_copy(engine, tenant)
                seconds, cpu_seconds = timed(engine, step)
                wall[key].append(seconds)
                if cpu_seconds is not None:
                    cpu[key].append(cpu_seconds)
        print(f"machine: {os.cpu_count()} cores; {datetime.now(UTC):%Y-%m-%d}")
        print(f"{args.products} products, {total} images, {args.repeat} round(s); medians")
        for key, label in STEPS.items():
            seconds = statistics.median(wall[key])
            used = f"  cpu {statistics.median(cpu[key]):7.2f} s" if cpu[key] else ""
            print(f"{label:26s}: {seconds:8.2f} s  {total / seconds:10.0f} images/s{used}")
        for times, kind in ((wall, "wall"), (cpu, "cpu")):
            if not times["runner"]:
                continue
            print(f"ratios of {kind} time (median of the rounds, and their range):")
            _ratio("runner / plain (real table)", times["plain"], times["runner"], ">= 0.5")
            _ratio("runner / plain (unindexed)", times["plain_copy"], times["runner"], "")
            _ratio("raw / plain (real table)", times["plain"], times["raw"], "")
            _ratio("runner / raw", times["raw"], times["runner"], "")
            _ratio("verify / runner", times["runner"], times["verify"], "<= 0.5", inverse=True)
        if args.skip_naive:
            return
        runner_s = statistics.median(wall["runner"])
        clear(engine, tenant)
        lean_s = naive_one_transaction(engine, tenant, args.naive_sample) * args.products
        clear(engine, tenant)
        naive_s = naive_per_product(engine, tenant, args.naive_sample) * args.products
        print(f"naive, per product    : {naive_s:8.2f} s  {total / naive_s:10.0f} images/s (est)")
        print(f"naive, one transaction: {lean_s:8.2f} s  {total / lean_s:10.0f} images/s (est)")
        print(f"runner / naive per product     = {naive_s / runner_s:.1f}x (target >= 15)")
        print(f"runner / naive one transaction = {lean_s / runner_s:.1f}x (no lock, not resumable)")


def _ratio(
    label: str, baseline: list[float], measured: list[float], target: str, *, inverse: bool = False
) -> None:
    """Throughput ratios per round (baseline time / measured time; verify: measured / baseline),
    their median and range."""
    ratios = sorted((m / b if inverse else b / m) for b, m in zip(baseline, measured, strict=True))
    spread = f"  (rounds: {ratios[0]:.2f} .. {ratios[-1]:.2f})" if len(ratios) > 1 else ""
    goal = f"  target {target}" if target else ""
    print(f"  {label:28s} = {statistics.median(ratios):.2f}{goal}{spread}")


if __name__ == "__main__":
    main()
