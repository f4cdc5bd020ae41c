"""Screenshots of the console for the docs: the overview and one tenant's page, from
whatever database DATABASE_URL names (the demo data, seeded by `python -m app seed`).

    DATABASE_URL=... .venv/bin/python scripts/console_screenshots.py --tenant 3
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.security import issue_token, now_utc
from app.core.settings import PROJECT_ROOT, get_settings
from app.main import create_app
from tests.console.browser import chromium, live_server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenant", type=int, default=1)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs")
    args = parser.parse_args()
    settings = get_settings()
    token = issue_token(
        settings.jwt_secret, user_id=None, is_admin=True, ttl=timedelta(hours=1), now=now_utc()
    )
    app = create_app(settings)
    with live_server(app) as url, chromium() as browser:
        page = browser.new_page(base_url=url, viewport={"width": 1280, "height": 900})
        page.goto("/admin/login")
        page.fill("textarea[name=token]", token)
        page.click("button[type=submit]")
        page.wait_for_selector("#progress-numbers")
        app.state.console_rows.wait()  # the label totals, counted behind the first view
        page.reload()
        page.wait_for_selector("#labels-table")
        page.screenshot(path=str(args.out / "console-overview.png"), full_page=True)
        page.goto(f"/admin/tenants/{args.tenant}")
        page.wait_for_selector("#tenant-progress #progress-numbers")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(args.out / "console-tenant.png"), full_page=False)
    print(f"wrote {args.out / 'console-overview.png'} and {args.out / 'console-tenant.png'}")


if __name__ == "__main__":
    main()
