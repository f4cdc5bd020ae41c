"""The operator console, server side: sign-in and its refusals (no token, a tenant token, a
forged cookie, a missing CSRF token: refused, nothing changed), every view, every action
with the CLI's guards."""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError

from app.console import routes as console_routes
from app.console import state as console_state
from app.console.state import RowCache
from app.core import migrate
from app.core.security import issue_token, now_utc
from app.core.settings import Settings
from backfill.labels import LabelReport, label_reports
from backfill.runner import RunOptions, run_tenant
from backfill.status import tenant_status
from backfill.tenants import select_tenants
from backfill.verify import verify_tenant
from flags import toggle_file
from flags.client import Toggle
from flags.stages import Flags
from tests.api.test_read_switch import migrated_tenant
from tests.backfill.test_contract import ready_tenant
from tests.backfill.test_jobs import real_worker, wait_for_run
from tests.conftest import TEST_SECRET, bearer
from tests.flags.test_client import write_toggles
from tests.images_db import insert_legacy_product

BASE = "http://testserver/media"


def admin_token(secret: str = TEST_SECRET) -> str:
    return issue_token(secret, user_id=None, is_admin=True, ttl=timedelta(hours=1), now=now_utc())


def sign_in(client: TestClient, token: str | None = None) -> str:
    response = client.post(
        "/admin/login", data={"token": token or admin_token()}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie
    page = client.get("/admin")
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert match
    return match.group(1)


def install_cache(console: TestClient, clock: Callable[[], float]) -> RowCache:
    """The console's rows on a fake clock (they go stale only when the test says)."""
    state = console.app.state  # type: ignore[attr-defined]
    state.console_rows = RowCache(
        state.services.engine, state.services.flags.flags_for, clock=clock
    )
    return state.console_rows  # type: ignore[no-any-return]


def test_pages_redirect_to_sign_in_and_actions_are_refused_without_a_session(
    console: TestClient, toggles: Path, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, _ = migrated_tenant(engine, make_tenant, verify=True)
    before = toggles.read_text()
    for page in (
        "/admin",
        "/admin/tenants",
        f"/admin/tenants/{tenant}",
        "/admin/fragments/progress",
    ):
        response = console.get(page, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith(
            "/admin/login"
        )
    refused = console.post(
        "/admin/actions/flag",
        data={"tenant": str(tenant), "toggle": "read-table", "enable": "on", "csrf": "x"},
    )
    assert refused.status_code == 403
    assert toggles.read_text() == before


def test_a_tenant_token_and_a_forged_cookie_do_not_open_the_console(console: TestClient) -> None:
    tenant_token = issue_token(TEST_SECRET, user_id=1, ttl=timedelta(hours=1), now=now_utc())
    response = console.post("/admin/login", data={"token": tenant_token}, follow_redirects=False)
    assert response.status_code == 200 and "not an admin token" in response.text
    assert "set-cookie" not in response.headers
    forged = admin_token(secret="another-secret-0123456789-0123456789-xx")
    console.cookies.set("pim_console", forged, path="/admin")
    page = console.get("/admin", follow_redirects=False)
    assert page.status_code == 303


def test_a_missing_or_wrong_csrf_token_changes_nothing(
    console: TestClient, toggles: Path, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, _ = migrated_tenant(engine, make_tenant, verify=True)
    sign_in(console)
    before = toggles.read_text()
    for csrf in (None, "0" * 64):
        data = {"tenant": str(tenant), "toggle": "read-table", "enable": "on"}
        if csrf:
            data["csrf"] = csrf
        assert console.post("/admin/actions/flag", data=data).status_code == 403
    assert toggles.read_text() == before


def test_the_overview_shows_the_same_numbers_as_backfill_status(
    console: TestClient, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    migrated_tenant(engine, make_tenant, verify=True)
    pending = make_tenant()
    insert_legacy_product(engine, pending, [{"url": f"{BASE}/a.jpg"}])
    sign_in(console)
    page = console.get("/admin").text
    statuses = tenant_status(engine, select_tenants(engine, None))
    total = sum(s.jsonb_images for s in statuses)
    done = sum(min(s.jsonb_images, s.table_rows + s.rejected) for s in statuses)
    assert f'id="tenants-count">{len(statuses)}<' in page
    assert f"{done:,} / {total:,} images" in page
    assert f'id="rejected">{sum(s.rejected for s in statuses):,}<' in page


def test_the_tenants_table_filters_sorts_and_pages(
    console: TestClient,
    engine: Engine,
    make_tenant: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verified, _ = migrated_tenant(engine, make_tenant, verify=True)
    backfilled, _ = migrated_tenant(engine, make_tenant, verify=False)
    sign_in(console)
    only_verified = console.get("/admin/tenants?stage=verified").text
    rows = re.findall(r'data-tenant="(\d+)"', only_verified)
    assert str(verified) in rows and str(backfilled) not in rows
    by_tenant = re.findall(r'data-tenant="(\d+)"', console.get("/admin/tenants?order=desc").text)
    assert by_tenant == sorted(by_tenant, key=int, reverse=True)
    monkeypatch.setattr(console_routes, "PAGE_SIZE", 1)
    first = console.get("/admin/tenants?page=1").text
    assert len(re.findall(r"data-tenant=", first)) == 1 and 'id="next-page"' in first
    assert console.get("/admin/tenants?stage=<script>").status_code == 200


def test_the_tenant_page_shows_photos_with_the_label_apart_runs_and_rejections(
    console: TestClient, engine: Engine, make_tenant: Callable[[], int], toggles: Path
) -> None:
    tenant = make_tenant()
    insert_legacy_product(
        engine,
        tenant,
        [{"url": f"{BASE}/a.jpg"}, {"url": f"{BASE}/b.jpg"}, {"url": f"{BASE}/label.jpg"}, 7],
    )
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    write_toggles(toggles, [str(tenant)])
    sign_in(console)
    console.app.state.services.flags.reload()  # type: ignore[attr-defined]
    page = console.get(f"/admin/tenants/{tenant}").text
    assert 'id="tenant-stage">live<' in page
    assert 'id="progress-percent">100.0%<' in page, "the progress is in the page, not only polled"
    assert 'id="metadata">0 / 3 / 0<' in page, "metadata complete / pending / failed"
    photos, label = page.split('class="label"', 1)[0], page.split('class="label"', 1)[1]
    assert f"{BASE}/a.jpg" in photos and f"{BASE}/label.jpg" not in photos.split("<tbody>")[-1]
    assert f"{BASE}/label.jpg" in label.split("</td>")[0]
    assert "not_an_object" in page or "not an object" in page, "the rejected element is listed"
    assert console.get("/admin/tenants/999999").status_code == 404


Act = Callable[..., str]


def actor(console: TestClient, csrf: str, referer: str = "http://testserver/admin") -> Act:
    """Post an action; the message the page shows after it (status 200 after the redirect)."""

    def act(path: str, **data: str) -> str:
        response = console.post(
            f"/admin/actions/{path}", data={"csrf": csrf, **data}, headers={"referer": referer}
        )
        assert response.status_code == 200, response.text
        match = re.search(r'id="msg">([^<]*)<', response.text)
        assert match, response.text
        return html.unescape(match.group(1))

    return act


def refusal(console: TestClient, csrf: str, path: str, **data: str) -> str:
    """Post an action the guards refuse; the reason the refusal page shows."""
    response = console.post(f"/admin/{path}", data={"csrf": csrf, **data})
    assert response.status_code in (400, 404, 409), response.text
    match = re.search(r'id="reason">([^<]*)<', response.text)
    assert match, response.text
    return html.unescape(match.group(1))


def run_of(message: str) -> int:
    match = re.search(r"queued as run (\d+)", message)
    assert match, message
    return int(match.group(1))


def test_actions_queue_jobs_switch_refuse_pause_and_log_who(
    console: TestClient,
    engine: Engine,
    make_tenant: Callable[[], int],
    toggles: Path,
    caplog: pytest.LogCaptureFixture,
    database_url: str,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO)
    verified, _ = migrated_tenant(engine, make_tenant, verify=False)
    unverified, _ = migrated_tenant(engine, make_tenant, verify=False)
    csrf = sign_in(console)
    act = actor(console, csrf)

    verify_run = run_of(act("verify", tenant=str(verified)))
    assert "already queued" in act("verify", tenant=str(verified))
    assert "not a tenant id" in refusal(console, csrf, "actions/verify", tenant="abc")
    with real_worker(database_url, tmp_path, FLAGS_FILE=str(toggles)):
        verify = wait_for_run(engine, verify_run)
        audit_run = run_of(act("audit", tenant=str(verified)))
        audit = wait_for_run(engine, audit_run)
    assert verify.state == "done" and verify.result and verify.result["is_verified"]
    assert audit.state == "done" and audit.result and audit.result["leaking"] == 0
    runs = console.get(f"/admin/fragments/runs?tenant={verified}").text
    assert f'id="run-{verify_run}"' in runs and "verified" in runs
    page = console.get(f"/admin/tenants/{verified}").text
    assert 'id="tenant-stage">verified<' in page
    assert 'id="tenant-audit">Last audit' in page

    assert "read-table: tenants" in act("flag", tenant=str(verified), toggle="read-table")
    assert toggle_file.tenants(toggle_file.load(toggles), Toggle.READ_TABLE) == [verified]
    refused = refusal(console, csrf, "actions/flag", tenant=str(unverified), toggle="read-table")
    assert "not verified" in refused
    assert toggle_file.tenants(toggle_file.load(toggles), Toggle.READ_TABLE) == [verified]
    assert "backfill-pause: on" in act("pause", paused="on")
    assert toggle_file.load(toggles)["features"][3]["enabled"] is True
    assert "backfill-pause: off" in act("pause", paused="off")
    assert "backfill queued for 1 tenant(s)" in act("backfill", tenant=str(unverified))
    assert "already queued" in act("backfill", tenant=str(unverified))
    with engine.connect() as connection:
        connection.execute(text("SET search_path TO procrastinate"))  # its triggers need it
        queued = connection.execute(
            text(
                "SELECT count(*) FROM procrastinate.procrastinate_jobs "
                "WHERE queueing_lock = :k AND status = 'todo'"
            ),
            {"k": f"backfill:user_{unverified}"},
        ).scalar_one()
        connection.execute(
            text("DELETE FROM procrastinate.procrastinate_jobs WHERE queueing_lock = :k"),
            {"k": f"backfill:user_{unverified}"},
        )
        connection.commit()
    assert queued == 1
    actions = [r.msg for r in caplog.records if "console.action" in str(r.msg)]
    assert len(actions) >= 8, "every action is logged with who and what"
    assert all("admin token" in str(a) for a in actions)


def test_an_action_shows_in_the_tenants_table_at_once_and_a_failed_refresh_is_shown(
    console: TestClient,
    engine: Engine,
    make_tenant: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(console_routes, "PAGE_SIZE", 100_000)  # one page, whatever else ran
    tenant, _ = migrated_tenant(engine, make_tenant, verify=True)
    clock = [0.0]
    cache = install_cache(console, lambda: clock[0])
    csrf = sign_in(console)

    def listed(stage: str) -> list[str]:
        return re.findall(r'data-tenant="(\d+)"', console.get(f"/admin/tenants?stage={stage}").text)

    assert str(tenant) in listed("verified")
    console.post(
        "/admin/actions/flag",
        data={"csrf": csrf, "tenant": str(tenant), "toggle": "shadow-compare", "enable": "on"},
        headers={"referer": "http://testserver/admin/tenants"},
    )
    # The rows are not stale (the fake clock has not moved): only the action's own read of
    # the tenant can have moved it to "shadow".
    assert str(tenant) in listed("shadow") and str(tenant) not in listed("verified")

    def down(*_args: object, **_kwargs: object) -> list[object]:
        raise RuntimeError("connection refused")

    monkeypatch.setattr(console_state, "tenant_rows", down)
    clock[0] += 5
    console.get("/admin/tenants")  # stale: served, and a background refresh started
    cache.wait()
    page = console.get("/admin/tenants").text
    assert str(tenant) in re.findall(r'data-tenant="(\d+)"', page), "the last rows are kept"
    assert 'id="refresh-error"' in page and "connection refused" in page
    assert "Figures as of 5 s ago" in page


def test_the_overview_shows_the_label_totals_once_counted(
    console: TestClient, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    for source in ("pythonApiWOO", "stoflow"):
        insert_legacy_product(
            engine, tenant, [{"url": f"{BASE}/a.jpg"}, {"url": f"{BASE}/b.jpg"}], source=source
        )
    run_tenant(engine, tenant, RunOptions())
    sign_in(console)  # its first view of /admin starts counting the labels
    console.app.state.console_rows.wait()  # type: ignore[attr-defined]
    statuses = tenant_status(engine, select_tenants(engine, None))
    jsonb = [s.tenant_id for s in statuses if not s.is_contracted]  # the others have no JSONB
    total = label_reports(engine, jsonb, ("pythonApiWOO",))[-1]
    assert total.rule_labels >= 1
    page = console.get("/admin").text
    assert f'id="labels-rule">{total.rule_labels}<' in page
    assert f'id="labels-table">{total.table_labels}<' in page


def test_the_progress_of_a_tenant_newer_than_the_rows_in_memory_is_read_not_guessed(
    console: TestClient, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    install_cache(console, lambda: 0.0)  # never stale: only explicit reads change it
    sign_in(console)  # fills the rows
    tenant = make_tenant()
    insert_legacy_product(engine, tenant, [{"url": f"{BASE}/a.jpg"}, {"url": f"{BASE}/b.jpg"}])
    fragment = console.get(f"/admin/fragments/progress?tenant={tenant}").text
    assert 'id="progress-percent">0.0%<' in fragment, "not 100% of nothing"
    assert "0 / 2 images" in fragment
    missing = console.get("/admin/fragments/progress?tenant=999999")
    assert 'id="progress-missing"' in missing.text and "progress-percent" not in missing.text
    assert missing.status_code == 286, "htmx stops polling a tenant with no figures"


def test_polls_and_views_are_served_from_memory(
    console: TestClient,
    engine: Engine,
    make_tenant: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, _ = migrated_tenant(engine, make_tenant, verify=True)
    cache = install_cache(console, lambda: 0.0)  # never stale: only explicit reads change it
    sign_in(console)
    cache.wait()

    def no_database(*_args: object, **_kwargs: object) -> list[object]:
        raise AssertionError("a poll or a list view read the tenants")

    monkeypatch.setattr(console_state, "tenant_rows", no_database)
    for path in (f"/admin/fragments/progress?tenant={tenant}", "/admin/fragments/progress"):
        response = console.get(path)
        assert response.status_code == 200 and 'id="progress-percent">' in response.text
    assert f'data-tenant="{tenant}"' in console.get("/admin/tenants?stage=verified").text


def test_a_committed_action_stands_when_reading_its_row_fails(
    console: TestClient,
    engine: Engine,
    make_tenant: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant, _ = migrated_tenant(engine, make_tenant, verify=True)
    csrf = sign_in(console)

    def failing(_self: RowCache, _tenant_ids: object) -> list[object]:
        raise RuntimeError("connection lost")

    monkeypatch.setattr(RowCache, "read_tenants", failing)
    response = console.post(
        "/admin/actions/flag",
        data={"csrf": csrf, "tenant": str(tenant), "toggle": "shadow-compare", "enable": "on"},
        headers={"referer": "http://testserver/admin"},
    )
    assert response.status_code == 200 and f"shadow-compare: tenants [{tenant}]" in response.text
    monkeypatch.undo()
    listed = console.get("/admin/tenants?stage=shadow").text  # every row read again
    assert f'data-tenant="{tenant}"' in listed


def test_the_label_totals_leave_out_a_tenant_contracted_after_the_rows_were_read(
    engine: Engine, make_tenant: Callable[[], int], settings: Settings
) -> None:
    tenant = ready_tenant(engine, make_tenant, copies=1)
    cache = RowCache(engine, lambda _t: Flags(), clock=lambda: 0.0)
    assert any(r.tenant_id == tenant and not r.status.is_contracted for r in cache.rows())
    migrate.contract(engine, tenant_ids=[tenant])
    assert cache.labels() is None  # counted in the background
    cache.wait()
    assert cache.labels_error is None and cache.labels() is not None
    with pytest.raises(ProgrammingError):
        label_reports(engine, [tenant], ("pythonApiWOO",))
    assert label_reports(engine, [tenant], ("pythonApiWOO",), skip_contracted=True) == [
        LabelReport(None)
    ]


def test_the_tenant_page_survives_a_contract_that_lands_while_it_renders(
    console: TestClient,
    engine: Engine,
    make_tenant: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The contract job of the browser walk dropped the column after the page had read the
    # tenant's row and before it counted the labels: a 500 (CI run, fresh clone).
    tenant = ready_tenant(engine, make_tenant, copies=1)
    sign_in(console)
    count_labels = console_routes.label_reports

    def contract_first(*args: object, **kwargs: object) -> list[LabelReport]:
        migrate.contract(engine, tenant_ids=[tenant])
        return count_labels(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(console_routes, "label_reports", contract_first)
    response = console.get(f"/admin/tenants/{tenant}")

    assert response.status_code == 200, response.text
    assert 'id="tenant-stage"' in response.text


def test_the_repair_action_rebuilds_drifted_products_then_verify_passes(
    console: TestClient, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant, product = migrated_tenant(engine, make_tenant, verify=True)
    with engine.begin() as connection:  # a hand-written UPDATE: the JSONB only
        connection.execute(
            text(f"UPDATE user_{tenant}.products SET images = images - 0 WHERE id = :id"),
            {"id": product},
        )
    csrf = sign_in(console)
    act = actor(console, csrf, referer=f"http://testserver/admin/tenants/{tenant}")

    assert not verify_tenant(engine, tenant).is_verified
    page = console.get(f"/admin/tenants/{tenant}").text
    assert 'id="repair"' in page
    assert "1 product(s) written outside the dual-write" in page
    assert f"<tr><td>{product}</td>" in page, "the changed product is listed"
    assert "verify found differences" in page
    assert "1 product(s) rebuilt" in act("repair", tenant=str(tenant))
    assert "not a tenant id" in refusal(console, csrf, "actions/repair", tenant="abc")
    assert verify_tenant(engine, tenant).is_verified
    assert "0 product(s) written outside" in console.get(f"/admin/tenants/{tenant}").text


def test_the_tenant_page_shows_its_reads_by_origin_over_the_last_hour(
    console: TestClient, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    product = insert_legacy_product(engine, tenant, [{"url": f"{BASE}/a.jpg"}])
    sign_in(console)
    assert 'id="read-origins-none"' in console.get(f"/admin/tenants/{tenant}").text
    for _ in range(3):
        response = console.get(f"/api/products/{product}/images", headers=bearer(tenant))
        assert response.status_code == 200, response.text
    console.app.state.services.reads.flush()  # type: ignore[attr-defined]
    page = console.get(f"/admin/tenants/{tenant}").text
    row = re.search(r'<tr id="origin-jsonb"><td>jsonb</td>\s*<td class="num">(\d+)</td>', page)
    assert row, page
    # The three API reads, and the page's own sample read of the first view (it reads the
    # tenant's products through the same path, and says so under the table).
    assert int(row.group(1)) == 4
