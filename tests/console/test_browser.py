"""The console in a real Chromium (Debian's, driven by Playwright): sign in, the overview's
numbers match `backfill status`, a backfill queued from the page runs on a real worker and
the progress reaches 100% without a reload, a verified tenant switches to table reads, an
unverified one is refused with the reason shown."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine

from app.core.settings import PROJECT_ROOT, Settings
from app.main import create_app
from backfill.status import tenant_status
from backfill.tenants import select_tenants
from tests.api.test_read_switch import migrated_tenant
from tests.console.browser import NoChromium, chromium, live_server
from tests.console.test_console import admin_token
from tests.flags.test_client import write_toggles
from tests.images_db import insert_legacy_product

pytestmark = pytest.mark.xdist_group("browser")
BASE = "http://testserver/media"
WAIT_MS = 90_000  # a bound on a hang, not a timing assertion


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        with chromium() as launched:
            yield launched
    except NoChromium as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))  # CI installs it (.ci/run): its absence is a failure there
        pytest.skip(str(exc))


@pytest.fixture
def toggles(tmp_path: Path) -> Path:
    path = tmp_path / "toggles.json"
    write_toggles(path, [])
    return path


@pytest.fixture
def site(settings: Settings, engine: Engine, toggles: Path) -> Iterator[str]:
    app = create_app(settings.model_copy(update={"flags_file": toggles}), engine)
    with live_server(app) as url:
        yield url


@pytest.fixture
def page(browser: Browser, site: str) -> Iterator[Page]:
    context = browser.new_context(base_url=site)
    opened = context.new_page()
    opened.on("dialog", lambda dialog: dialog.accept())
    opened.goto("/admin")
    expect(opened).to_have_url(re.compile(r"/admin/login"))
    opened.fill("textarea[name=token]", admin_token())
    opened.click("button[type=submit]")
    expect(opened.locator("h1")).to_have_text("Overview")
    yield opened
    context.close()


def test_the_overview_shows_what_backfill_status_says(
    page: Page, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    migrated_tenant(engine, make_tenant, verify=True)
    statuses = tenant_status(engine, select_tenants(engine, None))
    total = sum(s.jsonb_images for s in statuses)
    done = sum(min(s.jsonb_images, s.table_rows + s.rejected) for s in statuses)
    for _ in range(40):  # the overview's rows are at most a second old
        page.reload()
        if page.locator("#tenants-count").inner_text() == str(len(statuses)):
            break
        page.wait_for_timeout(250)
    expect(page.locator("#tenants-count")).to_have_text(str(len(statuses)))
    expect(page.locator("#progress-numbers")).to_contain_text(f"{done:,} / {total:,} images")


def test_a_backfill_queued_from_the_page_reaches_100_percent_live(
    page: Page, engine: Engine, make_tenant: Callable[[], int], database_url: str, toggles: Path
) -> None:
    tenant = make_tenant()
    for n in range(60):
        insert_legacy_product(
            engine, tenant, [{"url": f"{BASE}/{n}-{k}.jpg", "order": k} for k in range(4)]
        )
    worker = subprocess.Popen(
        [sys.executable, "-m", "backfill", "worker"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "FLAGS_FILE": str(toggles)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        page.goto(f"/admin/tenants/{tenant}")
        expect(page.locator("#tenant-progress")).to_contain_text("0.0%", timeout=WAIT_MS)
        page.click("#backfill")
        expect(page.locator("#msg")).to_contain_text("backfill queued for 1 tenant(s)")
        # No reload: htmx polls the progress fragment every second.
        expect(page.locator("#tenant-progress")).to_contain_text("100.0%", timeout=WAIT_MS)
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_a_verified_tenant_goes_live_and_an_unverified_one_is_refused(
    page: Page, engine: Engine, make_tenant: Callable[[], int]
) -> None:
    verified, _ = migrated_tenant(engine, make_tenant, verify=True)
    unverified, _ = migrated_tenant(engine, make_tenant, verify=False)
    page.goto(f"/admin/tenants/{verified}")
    expect(page.locator("#tenant-stage")).to_have_text("verified")
    page.click("#enable-read-table")
    expect(page.locator("#msg")).to_contain_text(f"read-table: tenants [{verified}]")
    expect(page.locator("#tenant-stage")).to_have_text("live")

    page.goto(f"/admin/tenants/{unverified}")
    page.click("#enable-read-table")
    expect(page.locator("#msg")).to_contain_text("refused")
    expect(page.locator("#msg")).to_contain_text("not verified")
    expect(page.locator("#tenant-stage")).to_have_text("backfilled")
