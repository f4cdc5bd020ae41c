"""`python -m flags` against the local toggle file: move a tenant to table reads and back,
with the verified interlock; status shows the effective stage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from app.core.database import tenant_schema
from app.core.settings import PROJECT_ROOT, Settings
from app.main import create_app
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant
from flags import toggle_file
from flags.client import TOGGLES_FILE, Toggle
from tests.conftest import bearer
from tests.images_db import insert_legacy_product

BASE = "http://testserver/media"


def flags_cli(database_url: str, toggles: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flags", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "FLAGS_FILE": str(toggles)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@given(st.sets(st.integers(1, 10**6)), st.sets(st.integers(1, 10**6)))
def test_adding_then_removing_tenants_is_set_arithmetic(added: set[int], removed: set[int]) -> None:
    definitions = toggle_file.load(TOGGLES_FILE)
    changed = toggle_file.with_tenants(definitions, Toggle.READ_TABLE, add=added)
    assert toggle_file.tenants(changed, Toggle.READ_TABLE) == sorted(added)
    back = toggle_file.with_tenants(changed, Toggle.READ_TABLE, remove=removed)
    assert toggle_file.tenants(back, Toggle.READ_TABLE) == sorted(added - removed)
    assert toggle_file.tenants(definitions, Toggle.READ_TABLE) == [], "the input is not mutated"


def test_one_command_moves_a_verified_tenant_and_an_unverified_one_is_refused(
    database_url: str,
    engine: Engine,
    make_tenant,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    toggles = tmp_path / "toggles.json"
    shutil.copy(TOGGLES_FILE, toggles)
    verified, unverified = make_tenant(), make_tenant()
    for tenant in (verified, unverified):
        insert_legacy_product(engine, tenant, [{"url": f"{BASE}/a.jpg"}, {"url": f"{BASE}/b.jpg"}])
        run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, verified).is_verified

    refused = flags_cli(database_url, toggles, "enable", "read-table", "--tenant", str(unverified))
    moved = flags_cli(database_url, toggles, "enable", "read-table", "--tenant", str(verified))
    status = flags_cli(database_url, toggles, "status", "--tenant", str(verified))
    back = flags_cli(database_url, toggles, "disable", "read-table", "--tenant", str(verified))

    assert refused.returncode == 2
    assert "not verified" in refused.stderr
    assert moved.returncode == 0, moved.stderr
    assert "live" in status.stdout and "table" in status.stdout
    assert back.returncode == 0
    assert toggle_file.tenants(toggle_file.load(toggles), Toggle.READ_TABLE) == []
    forced = flags_cli(
        database_url, toggles, "enable", "read-table", "--tenant", str(unverified), "--force"
    )
    assert forced.returncode == 0
    status = flags_cli(database_url, toggles, "status", "--tenant", str(unverified))
    assert "refused" in status.stdout, "the interlock still keeps its reads on the JSONB"


def test_bad_toggle_names_and_arguments_are_exit_code_2(database_url: str, tmp_path: Path) -> None:
    toggles = tmp_path / "toggles.json"
    shutil.copy(TOGGLES_FILE, toggles)
    assert (
        flags_cli(database_url, toggles, "enable", "read-tables", "--tenant", "1").returncode == 2
    )
    assert flags_cli(database_url, toggles, "enable", "read-table").returncode == 2
    assert flags_cli(database_url, toggles, "enable", "dual-write", "--tenant", "1").returncode == 2
    assert flags_cli(database_url, toggles, "disable", "backfill-pause").returncode == 0


def test_mismatches_shows_the_sample_and_replay_says_what_still_differs(
    database_url: str,
    engine: Engine,
    settings: Settings,
    make_tenant: Callable[[], int],
    tmp_path: Path,
) -> None:
    toggles = tmp_path / "toggles.json"
    shutil.copy(TOGGLES_FILE, toggles)
    tenant = make_tenant()
    product = insert_legacy_product(
        engine, tenant, [{"url": f"{BASE}/a.jpg"}, {"url": f"{BASE}/b.jpg"}]
    )
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    assert (
        flags_cli(
            database_url, toggles, "enable", "shadow-compare", "--tenant", str(tenant)
        ).returncode
        == 0
    )
    schema = tenant_schema(tenant)
    swap = (
        f'UPDATE "{schema}".product_images SET url = CASE "order" WHEN 0 THEN :b ELSE :a END '
        "WHERE product_id = :p"
    )
    with engine.begin() as connection:
        connection.execute(text(swap), {"a": f"{BASE}/a.jpg", "b": f"{BASE}/b.jpg", "p": product})
    app = create_app(settings.model_copy(update={"flags_file": toggles}), engine)
    with TestClient(app) as client:
        read = client.get(f"/api/products/{product}/images", headers=bearer(tenant))
        assert read.headers["x-images-read-path"] == "jsonb"

    status = flags_cli(database_url, toggles, "status", "--tenant", str(tenant))
    listed = flags_cli(database_url, toggles, "mismatches", "--tenant", str(tenant))
    replayed = flags_cli(database_url, toggles, "mismatches", "--tenant", str(tenant), "--replay")
    with engine.begin() as connection:  # the fix
        connection.execute(text(swap), {"a": f"{BASE}/b.jpg", "b": f"{BASE}/a.jpg", "p": product})
    fixed = flags_cli(database_url, toggles, "mismatches", "--tenant", str(tenant), "--replay")

    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if f" {tenant} " in line)
    assert "shadow" in row and " 1 (last" in row
    assert (
        listed.returncode == 0
        and "field_differs" in listed.stdout
        and str(product) in listed.stdout
    )
    assert replayed.returncode == 1 and "differs: field_differs" in replayed.stdout
    assert fixed.returncode == 0 and "equal" in fixed.stdout
    assert "0 of 1 product(s) still differ" in fixed.stdout


def test_push_and_admin_token_need_an_unleash_server(database_url: str, tmp_path: Path) -> None:
    toggles = tmp_path / "toggles.json"
    shutil.copy(TOGGLES_FILE, toggles)
    push = flags_cli(database_url, toggles, "push")
    assert push.returncode == 2 and "UNLEASH_URL" in push.stderr
    no_token = subprocess.run(
        [sys.executable, "-m", "flags", "enable", "backfill-pause"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "UNLEASH_URL": "http://127.0.0.1:9/api"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert no_token.returncode == 2 and "UNLEASH_ADMIN_TOKEN" in no_token.stderr
    unreachable = subprocess.run(
        [sys.executable, "-m", "flags", "enable", "backfill-pause"],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "UNLEASH_URL": "http://127.0.0.1:9/api",
            "UNLEASH_ADMIN_TOKEN": "*:*.nothing",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unreachable.returncode == 1 and "cannot be reached" in unreachable.stderr
