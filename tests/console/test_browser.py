"""The console in a real Chromium (Debian's, driven by Playwright): sign in, the overview's
numbers match `backfill status`, a backfill queued from the page runs on a real worker and
the progress reaches 100% without a reload, a verified tenant switches to table reads, an
unverified one is refused with the reason shown; and one demo tenant walks every stage
forward to contracted and back to the JSONB from the page alone, jobs on a real worker."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import Engine, text

from app.core.settings import PROJECT_ROOT, Settings
from app.main import create_app
from backfill import job_runs
from backfill.status import tenant_status
from backfill.tenants import is_contracted, select_tenants
from tests.api.test_read_switch import migrated_tenant
from tests.backfill.test_jobs import real_worker
from tests.console.browser import NoChromium, chromium, free_port, live_server
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
    expect(page.locator("h1")).to_have_text("Refused")
    expect(page.locator("#reason")).to_contain_text("not verified")
    page.click("#back")
    expect(page.locator("#tenant-stage")).to_have_text("backfilled")


# --- the whole road, from the page alone --------------------------------------------------

PRODUCTS, PHOTOS = 12, 3  # each product: 3 photos and its price-tag label last (pythonApiWOO)


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A small solid PNG (the enrichment reads its header for the pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\0" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def seed_demo_tenant(engine: Engine, tenant: int, base: str, media: Path) -> int:
    """Legacy products whose photos (and label) are real files under the app's /media."""
    folder = media / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(PRODUCTS):
        images = []
        for k in range(PHOTOS + 1):
            name = f"{n}-{k}.png"
            label = k == PHOTOS
            colour = (200, 40, 40) if label else (40 + 15 * n, 90 + 40 * k, 160)
            size = (320, 240) if label else (640, 480)  # ebay wants 500 px on a side
            (folder / name).write_bytes(png(*size, colour))
            images.append({"url": f"{base}/demo/{name}", "order": k})
        insert_legacy_product(engine, tenant, images)
    return PRODUCTS * (PHOTOS + 1)


def table_images(engine: Engine, tenant: int) -> tuple[int, int]:
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE is_label) "
                f"FROM user_{tenant}.product_images"
            )
        ).one()
    return int(row[0]), int(row[1])


def jsonb_images(engine: Engine, tenant: int) -> tuple[int, int]:
    with engine.connect() as connection:
        row = connection.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE (e ->> 'is_label')::boolean) "
                f"FROM user_{tenant}.products AS p, jsonb_array_elements(p.images) AS e"
            )
        ).one()
    return int(row[0]), int(row[1])


class Walk:
    """One tenant's page, driven by clicks; screenshots when CONSOLE_SCREENSHOTS names a
    folder (docs/screenshots to refresh the docs' ones)."""

    def __init__(self, page: Page, tenant: int, shots: Path | None) -> None:
        self.page, self.tenant, self.shots, self.taken = page, tenant, shots, 0

    def open(self) -> None:
        self.page.goto(f"/admin/tenants/{self.tenant}")

    def click(self, selector: str, message: str) -> None:
        self.page.click(selector)  # the data-confirm dialog is accepted by the fixture
        expect(self.page.locator("#msg")).to_contain_text(message)

    def job(self, selector: str, kind: str, done: int = 1) -> None:
        """Queue a job from its button; wait (live, no reload) until the runs list says done."""
        self.click(selector, f"{kind} queued as run")
        finished = self.page.locator(f"#tenant-runs tr[data-kind={kind}][data-state=done]")
        expect(finished).to_have_count(done, timeout=WAIT_MS)

    def confirmed(self, link: str, action: str) -> None:
        """A destructive step: its confirmation page, the tenant's id typed."""
        self.page.click(link)
        expect(self.page.locator("h1")).to_contain_text(f"tenant {self.tenant}")
        self.page.fill("#confirm-tenant", str(self.tenant))
        self.shot(f"confirm-{action}")
        self.page.click(f"#confirm-{action}")
        expect(self.page.locator("#msg")).to_contain_text(f"{action} queued as run")
        finished = self.page.locator(f"#tenant-runs tr[data-kind={action}][data-state=done]")
        expect(finished).to_have_count(1, timeout=WAIT_MS)

    def stage(self, expected: str) -> None:
        self.open()  # a finished job's effect on the stage shows on the next view
        expect(self.page.locator("#tenant-stage")).to_have_text(expected)

    def shot(self, name: str) -> None:
        if self.shots is not None:
            self.page.wait_for_load_state("networkidle")
            # Thumbnails load lazily: a full-page shot would show the lower ones blank.
            self.page.evaluate(
                """async () => {
                  const images = [...document.images];
                  images.forEach((image) => { image.loading = "eager"; });
                  await Promise.all(images.map((image) => image.complete ? null
                    : new Promise((done) => { image.onload = image.onerror = done; })));
                }"""
            )
            self.taken += 1
            path = self.shots / f"{self.taken:02d}-{name}.png"
            self.page.screenshot(path=str(path), full_page=True)


def test_one_tenant_walks_every_stage_forward_and_back_from_the_page_alone(
    browser: Browser,
    engine: Engine,
    make_tenant: Callable[[], int],
    settings: Settings,
    database_url: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    base, media = f"http://127.0.0.1:{port}/media", tmp_path / "media"
    toggles = tmp_path / "demo-toggles.json"
    write_toggles(toggles, [])
    demo = settings.model_copy(
        update={"flags_file": toggles, "media_base_url": base, "media_root": media}
    )
    tenant = make_tenant()
    images = seed_demo_tenant(engine, tenant, base, media)
    shots_env = os.environ.get("CONSOLE_SCREENSHOTS")
    shots = Path(shots_env) if shots_env else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    app = create_app(demo, engine)
    worker_env = {
        "FLAGS_FILE": str(toggles),
        "MEDIA_BASE_URL": base,
        "MEDIA_ROOT": str(media),
        "MARKETPLACE_ALLOW_HTTP": "true",  # the demo's media is served over http
    }
    with (
        live_server(app, port) as url,
        real_worker(database_url, tmp_path / "worker", **worker_env),
    ):
        context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto("/admin/login")
        page.fill("textarea[name=token]", admin_token())
        page.click("button[type=submit]")
        walk = Walk(page, tenant, shots)
        walk.open()
        expect(page.locator("#tenant-stage")).to_have_text("dual-write")
        walk.shot("dual-write")

        # Forward: backfill, verify, shadow, read-table, audit, enrich, canonicalize, contract.
        walk.click("#backfill", "backfill queued for 1 tenant(s)")
        expect(page.locator("#tenant-progress")).to_contain_text("100.0%", timeout=WAIT_MS)
        walk.stage("backfilled")
        assert table_images(engine, tenant) == (images, PRODUCTS), "every image, labels by rule"
        walk.job("#verify", "verify")
        expect(page.locator("#tenant-runs tr[data-kind=verify] .run-outcome")).to_have_text(
            "verified"
        )
        walk.stage("verified")
        walk.click("#enable-shadow-compare", f"shadow-compare: tenants [{tenant}]")
        expect(page.locator("#tenant-stage")).to_have_text("shadow")
        walk.click("#enable-read-table", f"read-table: tenants [{tenant}]")
        expect(page.locator("#tenant-stage")).to_have_text("live")
        walk.shot("live")
        walk.job("#enrich", "enrich")
        walk.stage("live")
        expect(page.locator("#metadata")).to_have_text(f"{images} / 0 / 0")
        walk.job("#audit-tenant", "audit")
        walk.stage("live")
        expect(page.locator("#tenant-audit")).to_contain_text("vinted 0")
        walk.shot("live-enriched-audited")
        walk.job("#canonicalize", "canonicalize")
        outcome = page.locator("#tenant-runs tr[data-kind=canonicalize] .run-outcome")
        expect(outcome).to_contain_text("rewritten")
        walk.confirmed("#contract", "contract")
        walk.stage("complete")
        expect(page.locator("#backups")).to_contain_text("before contract")
        walk.shot("complete")
        assert table_images(engine, tenant) == (images, PRODUCTS)
        assert is_contracted(engine, tenant), "products.images is dropped"

        # Back: uncontract, read-table off, shadow off: reads from the JSONB again.
        walk.confirmed("#uncontract", "uncontract")
        walk.stage("live")
        walk.click("#disable-read-table", "read-table: tenants []")
        walk.click("#disable-shadow-compare", "shadow-compare: tenants []")
        expect(page.locator("#tenant-stage")).to_have_text("verified")
        expect(page.locator("td", has_text="jsonb").first).to_be_visible()
        walk.job("#audit-tenant", "audit", done=2)
        walk.stage("verified")
        walk.shot("back-to-jsonb")
        page.goto("/admin")
        walk.shot("overview")
        page.goto("/admin/runs")
        mine = f'#runs-table tr[data-state=done]:has(a[href="/admin/tenants/{tenant}"])'
        expect(page.locator(mine)).to_have_count(8)
        walk.shot("jobs")
        context.close()

    assert not is_contracted(engine, tenant)
    assert jsonb_images(engine, tenant) == (images, PRODUCTS), "no image lost, labels kept"
    assert table_images(engine, tenant) == (images, PRODUCTS)
    audits = job_runs.latest_results(engine, "audit", [tenant])
    assert audits and audits[0].result, "the audit ran"
    assert audits[0].result["products"] == PRODUCTS
    assert (audits[0].result["leaking"], audits[0].result["refused"]) == (0, 0), str(
        audits[0].result
    )
