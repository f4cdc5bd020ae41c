"""`python -m flags` against the local toggle file: move a tenant to table reads and back,
with the verified interlock; status shows the effective stage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine

from app.core.settings import PROJECT_ROOT
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant
from flags import toggle_file
from flags.client import TOGGLES_FILE, Toggle
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
