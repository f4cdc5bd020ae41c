"""`python -m backfill` as an operator runs it: real processes, exit codes, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from app.core import migrate
from app.core.database import tenant_schema
from app.core.settings import PROJECT_ROOT
from app.seed.bulk import insert_legacy_products

BASE = "http://testserver/media"


def backfill(database_url: str, *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backfill", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(tmp)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def start_backfill(database_url: str, *args: str, tmp: Path, **env: str) -> subprocess.Popen[str]:
    """`python -m backfill ARGS` started in the background, its stderr kept."""
    return subprocess.Popen(
        [sys.executable, "-m", "backfill", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(tmp), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll until true; the deadline only guards against a run that never gets there."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.05)


def many_products(engine: Engine, tenant: int, count: int, images_each: int = 5) -> None:
    insert_legacy_products(engine, tenant, count, images_each=images_each, base=BASE)


def image_rows(engine: Engine, tenant: int) -> tuple[int, int]:
    with engine.connect() as connection:
        row = connection.execute(
            text(
                f'SELECT count(*), count(DISTINCT (product_id, "order")) '
                f"FROM {tenant_schema(tenant)}.product_images"
            )
        ).one()
    return int(row[0]), int(row[1])


def test_run_verify_status_from_the_command_line(
    database_url: str, engine: Engine, tenant: int, tmp_path: Path
) -> None:
    many_products(engine, tenant, 30)

    ran = backfill(database_url, "run", "--tenant", str(tenant), tmp=tmp_path)
    verified = backfill(database_url, "verify", "--tenant", str(tenant), tmp=tmp_path)
    status = backfill(database_url, "status", "--tenant", str(tenant), tmp=tmp_path)

    assert ran.returncode == 0, ran.stderr
    assert "150 images inserted" in ran.stderr
    assert verified.returncode == 0, verified.stderr
    assert "verified" in verified.stderr
    assert status.returncode == 0, status.stderr
    assert str(tenant) in status.stdout
    assert "0/150/0" in status.stdout, "metadata: none complete yet, 150 pending, 0 failed"
    assert image_rows(engine, tenant) == (150, 150)


def test_status_names_the_tenants_it_leaves_out_because_they_are_not_at_head(
    database_url: str, engine: Engine, make_tenant: Callable[[], int], tmp_path: Path
) -> None:
    behind, current = make_tenant(), make_tenant()
    migrate.downgrade(engine, revision="0002", tenant_ids=[behind], lock_retries=0)

    status = backfill(
        database_url, "status", "--tenant", str(behind), "--tenant", str(current), tmp=tmp_path
    )

    assert status.returncode == 0, status.stderr
    assert f"not migrated to head, not shown: {behind} " in status.stderr
    assert str(current) in status.stdout


def test_canonicalize_passes_over_a_contracted_tenant_as_done(
    database_url: str, engine: Engine, make_tenant: Callable[[], int], tmp_path: Path
) -> None:
    from tests.backfill.test_contract import ready_tenant

    contracted, plain = ready_tenant(engine, make_tenant, 1), ready_tenant(engine, make_tenant, 1)
    migrate.contract(engine, tenant_ids=[contracted], lock_retries=0)

    result = backfill(
        database_url,
        "canonicalize",
        "--tenant",
        str(contracted),
        "--tenant",
        str(plain),
        tmp=tmp_path,
    )

    assert result.returncode == 0, result.stderr  # it said "refused" and exited 1
    assert f"tenant {contracted}: contracted (no JSONB left to rewrite)" in result.stderr
    assert f"tenant {plain}: 0 product(s) rewritten" in result.stderr


def test_unknown_tenant_is_exit_code_2(database_url: str, engine: Engine, tmp_path: Path) -> None:
    # `engine` migrates public: alone on its worker, this test met an unmigrated database.
    result = backfill(database_url, "run", "--tenant", "999999999", tmp=tmp_path)
    assert result.returncode == 2
    assert "--tenant" in result.stderr


def test_verify_exits_1_and_lists_products_on_a_mismatch(
    database_url: str, engine: Engine, tenant: int, tmp_path: Path
) -> None:
    many_products(engine, tenant, 3)
    result = backfill(database_url, "verify", "--tenant", str(tenant), tmp=tmp_path)
    assert result.returncode == 1
    assert "missing" in result.stderr


@pytest.mark.parametrize("kill_signal", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_run_resumes_with_no_duplicate_and_no_gap(
    database_url: str, engine: Engine, tenant: int, tmp_path: Path, kill_signal: signal.Signals
) -> None:
    many_products(engine, tenant, 3000, images_each=4)
    process = start_backfill(
        database_url,
        *("run", "--tenant", str(tenant), "--batch-size", "20", "--max-rate", "4000"),
        tmp=tmp_path,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and image_rows(engine, tenant)[0] < 2000:
        time.sleep(0.05)
    process.send_signal(kill_signal)
    _, stderr = process.communicate(timeout=60)
    interrupted = image_rows(engine, tenant)[0]
    assert 0 < interrupted < 12000, "killed mid-run"
    if kill_signal == signal.SIGTERM:
        assert process.returncode == 130, stderr  # finished its batch and stopped cleanly

    resumed = backfill(database_url, "run", "--tenant", str(tenant), tmp=tmp_path)
    verified = backfill(database_url, "verify", "--tenant", str(tenant), tmp=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    assert image_rows(engine, tenant) == (12000, 12000)
    assert verified.returncode == 0, verified.stderr
    with engine.connect() as connection:
        runs = connection.execute(
            text(f"SELECT count(*) FROM {tenant_schema(tenant)}.backfill_runs")
        ).scalar_one()
    assert runs == 1, "the rerun resumed the interrupted run"


def test_the_pause_toggle_holds_a_run_between_batches_until_it_is_off(
    database_url: str, engine: Engine, tenant: int, tmp_path: Path
) -> None:
    import json

    from flags.client import TOGGLES_FILE

    many_products(engine, tenant, 50)
    toggles = tmp_path / "toggles.json"
    definitions = json.loads(TOGGLES_FILE.read_text())
    pause = next(f for f in definitions["features"] if f["name"] == "product-images.backfill-pause")
    pause["enabled"] = True
    toggles.write_text(json.dumps(definitions))
    process = start_backfill(
        database_url, "run", "--tenant", str(tenant), tmp=tmp_path, FLAGS_FILE=str(toggles)
    )
    try:
        deadline = time.monotonic() + 30
        paused_seen = False
        while time.monotonic() < deadline and not paused_seen:
            with engine.connect() as connection:
                paused_seen = bool(
                    connection.execute(
                        text(f"SELECT count(*) FROM {tenant_schema(tenant)}.backfill_runs")
                    ).scalar_one()
                )
            time.sleep(0.1)
        time.sleep(1.5)  # a paused run inserts nothing, however long it waits
        assert image_rows(engine, tenant) == (0, 0)
        assert process.poll() is None
        pause["enabled"] = False
        temporary = toggles.with_suffix(".tmp")
        temporary.write_text(json.dumps(definitions))
        os.replace(temporary, toggles)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert image_rows(engine, tenant) == (250, 250)


def run_status(engine: Engine, tenant: int) -> str | None:
    with engine.connect() as connection:
        return connection.execute(
            text(f"SELECT max(status) FROM {tenant_schema(tenant)}.backfill_runs")
        ).scalar_one()


def paused_toggles(tmp_path: Path) -> Path:
    import json

    from flags.client import TOGGLES_FILE

    definitions = json.loads(TOGGLES_FILE.read_text())
    for feature in definitions["features"]:
        if feature["name"] == "product-images.backfill-pause":
            feature["enabled"] = True
    toggles = tmp_path / "toggles.json"
    toggles.write_text(json.dumps(definitions))
    return toggles


@pytest.mark.parametrize("wait", ["paused", "rate limited"])
def test_sigterm_stops_a_run_in_the_middle_of_a_wait(
    database_url: str, engine: Engine, tenant: int, tmp_path: Path, wait: str
) -> None:
    many_products(engine, tenant, 300, images_each=4)
    if wait == "paused":  # the pause toggle holds it before its first batch
        process = start_backfill(
            database_url,
            *("run", "--tenant", str(tenant)),
            tmp=tmp_path,
            FLAGS_FILE=str(paused_toggles(tmp_path)),
        )
        wait_until(lambda: run_status(engine, tenant) == "running")
        waiting_with = 0
    else:  # 400 images in the first batch at 1 image/s: a wait of about 400 s after it
        process = start_backfill(
            database_url,
            *("run", "--tenant", str(tenant), "--batch-size", "100", "--max-rate", "1"),
            tmp=tmp_path,
        )
        wait_until(lambda: image_rows(engine, tenant)[0] > 0)
        waiting_with = 400
    try:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)  # a failure guard only
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 130, stderr
    assert "backfill.stop_requested" in stderr
    assert image_rows(engine, tenant) == (waiting_with, waiting_with), "nothing after the stop"
    assert run_status(engine, tenant) == "interrupted"


@pytest.mark.parametrize(
    ("since", "reason"),
    [
        ("garbage", "not an ISO 8601 time"),
        ("yesterday", "not an ISO 8601 time"),
        ("2026-11-25T08:00:00", "no time zone"),
        ("2999-01-01T00:00:00Z", "in the future"),
    ],
)
def test_verify_since_refuses_a_time_it_would_have_to_guess(
    database_url: str, tmp_path: Path, tenant: int, since: str, reason: str
) -> None:
    # PostgreSQL read 'yesterday' happily and 'garbage' as a traceback; a naive time is in
    # the server's time zone and a future one compares nothing and says "clean".
    result = backfill(
        database_url, "verify", "--tenant", str(tenant), "--since", since, tmp=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert "--since" in result.stderr and reason in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["contract", "uncontract"])
def test_the_steps_that_need_named_tenants_do_not_offer_a_default(command: str) -> None:
    # Their --help said "default: all" while a bare call is refused (exit 2).
    from typer.testing import CliRunner

    from backfill.cli import cli

    shown = CliRunner().invoke(cli, [command, "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0
    assert "default: all" not in shown.output
    bare = CliRunner().invoke(cli, [command], env={"DATABASE_URL": "postgresql://x@127.0.0.1:1/x"})
    assert bare.exit_code == 2


def test_report_rejected_gives_each_rejected_element_its_reason(
    database_url: str, engine: Engine, tenant: int, tmp_path: Path
) -> None:
    # The README promised the reasons; run and verify printed only a count.
    from backfill.runner import RunOptions, run_tenant
    from tests.backfill.test_runner import seed

    seed(engine, tenant)
    run_tenant(engine, tenant, RunOptions())
    with engine.connect() as connection:
        by_reason = dict(
            connection.execute(
                text(
                    f"SELECT reason, count(*) FROM {tenant_schema(tenant)}.rejected_image_elements "
                    "GROUP BY reason"
                )
            ).all()
        )
    assert by_reason

    shown = backfill(database_url, "report", "rejected", "--tenant", str(tenant), tmp=tmp_path)

    assert shown.returncode == 0, shown.stderr
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in shown.stdout.splitlines()]
    assert {(r[1], r[2]) for r in rows if len(r) == 3 and r[0] == str(tenant)} == {
        (reason, str(n)) for reason, n in by_reason.items()
    }
    assert sum(by_reason.values()) == sum(
        1 for r in rows if len(r) == 6 and r[0] == str(tenant) and r[3] in by_reason
    )
