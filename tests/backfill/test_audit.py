"""audit-publications: before the switch it finds the products whose payloads would publish
a label; after backfill, verify and read-table, none."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from app.core.settings import PROJECT_ROOT
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant
from tests.flags.test_client import write_toggles
from tests.images_db import insert_legacy_product

BASE = "http://testserver/media"


def audit(database_url: str, toggles: Path, tenant: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backfill", "audit-publications", "--tenant", str(tenant)],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "FLAGS_FILE": str(toggles),
            "MARKETPLACE_ALLOW_HTTP": "true",
            "MEDIA_BASE_URL": BASE,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_audit_reports_leaks_before_the_switch_and_none_after(
    database_url: str, engine: Engine, make_tenant: Callable[[], int], tmp_path: Path
) -> None:
    tenant = make_tenant()
    legacy = [{"url": f"{BASE}/{n}.jpg", "order": i} for i, n in enumerate("abc")]
    insert_legacy_product(engine, tenant, legacy)  # label last: c.jpg
    insert_legacy_product(engine, tenant, legacy[:1])  # one image: no label
    insert_legacy_product(engine, tenant, legacy, source="stoflow")  # not a legacy source
    eleven = [{"url": f"{BASE}/x{i}.jpg", "order": i} for i in range(11)]
    insert_legacy_product(engine, tenant, eleven)  # its label is the 11th: past Etsy's cap
    toggles = tmp_path / "toggles.json"
    write_toggles(toggles, [])

    before = audit(database_url, toggles, tenant)
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    write_toggles(toggles, [str(tenant)])
    after = audit(database_url, toggles, tenant)

    assert before.returncode == 1, before.stderr
    row = next(line for line in before.stdout.splitlines() if line.startswith(f"│ {tenant} "))
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    # tenant, products, with a label, read path, then leaking / no photo per marketplace
    assert cells[1:4] == ["4", "2", "jsonb 4"]
    assert cells[4:] == ["2", "0", "2", "0", "1", "0"], "Etsy's cap of 10 hides one label"
    assert "would publish a label" in before.stdout
    assert after.returncode == 0, after.stderr + after.stdout
    row = next(line for line in after.stdout.splitlines() if line.startswith(f"│ {tenant} "))
    cells = [cell.strip() for cell in row.strip("│").split("│")]
    assert cells[3] == "table 4" and cells[4:] == ["0"] * 6
    assert "no payload would publish a label" in after.stdout
