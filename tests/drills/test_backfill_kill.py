"""Drill: `kill -9` a real `python -m backfill run` at random points, over and over (seeded).

After every kill the table holds whole products only (all of a product's rows or none), no
duplicate, contiguous orders and no gap before the checkpoint; each rerun resumes the same
run, and the last one ends with every image migrated and `backfill verify` clean.
(The single-kill version is tests/backfill/test_cli.py -k killed.)"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from app.core.database import tenant_schema
from app.core.settings import PROJECT_ROOT
from tests.drills.support import seed_products, table_invariants

PRODUCTS = 8000
IMAGES_EACH = 4
KILLS = 10
SEED = 20261112


def backfill(database_url: str, tmp: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "backfill", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(tmp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def rows(engine: Engine, tenant: int) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(f"SELECT count(*) FROM {tenant_schema(tenant)}.product_images")
            ).scalar_one()
        )


def run_statuses(engine: Engine, tenant: int) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text(f"SELECT status FROM {tenant_schema(tenant)}.backfill_runs ORDER BY id")
            ).scalars()
        )


@pytest.mark.drill
def test_repeated_random_kill_9_never_loses_or_duplicates_an_image(
    database_url: str, engine: Engine, tenant: int, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    seed_products(engine, tenant, PRODUCTS, images_each=IMAGES_EACH)
    total = PRODUCTS * IMAGES_EACH
    history: list[tuple[float, int]] = []
    for kill in range(KILLS):
        before = rows(engine, tenant)
        process = backfill(
            database_url,
            tmp_path,
            *("run", "--tenant", str(tenant), "--batch-size", "20", "--max-rate", "2000"),
        )
        try:
            # Kill at a random point once it is really working (inside or between batches).
            deadline = time.monotonic() + 60
            while rows(engine, tenant) == before and process.poll() is None:
                assert time.monotonic() < deadline, "the run never started working"
                time.sleep(0.02)
            delay = rng.uniform(0.0, 1.2)
            time.sleep(delay)
            assert process.poll() is None, f"kill {kill}: the run finished before the kill"
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        invariants = table_invariants(engine, tenant)
        migrated = invariants.pop("rows")
        history.append((round(delay, 3), migrated))
        assert invariants == dict.fromkeys(invariants, 0), (kill, invariants, history)
        assert before <= migrated < total, (kill, history)
        assert run_statuses(engine, tenant) == ["running"], "each rerun resumed the same run"

    final = backfill(database_url, tmp_path, "run", "--tenant", str(tenant))
    _, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr
    verify = backfill(database_url, tmp_path, "verify", "--tenant", str(tenant))
    _, verify_err = verify.communicate(timeout=300)
    assert verify.returncode == 0, verify_err

    invariants = table_invariants(engine, tenant)
    assert invariants.pop("rows") == total, history
    assert invariants == dict.fromkeys(invariants, 0), invariants
    assert run_statuses(engine, tenant) == ["done"], "ten kills, one run"
