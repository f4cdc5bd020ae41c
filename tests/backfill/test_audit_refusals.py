"""audit-publications does not pass vacuously: when a product with images gets no payload
because a marketplace rule refused its photos (http URLs, a type, a size), the audit proved
nothing about it, says so with the reasons and exits 1."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from app.core.settings import PROJECT_ROOT
from tests.flags.test_client import write_toggles
from tests.images_db import insert_legacy_product

HTTP_BASE = "http://testserver/media"
HTTPS_BASE = "https://cdn.example.com/media"


def audit(
    database_url: str, toggles: Path, tenant: int, base: str
) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it: http photo URLs refused (the default)."""
    environment = {k: v for k, v in os.environ.items() if k != "MARKETPLACE_ALLOW_HTTP"}
    return subprocess.run(
        [sys.executable, "-m", "backfill", "audit-publications", "--tenant", str(tenant)],
        cwd=PROJECT_ROOT,
        env={
            **environment,
            "DATABASE_URL": database_url,
            "FLAGS_FILE": str(toggles),
            "MEDIA_BASE_URL": base,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_products_whose_photos_every_marketplace_refuses_fail_the_audit(
    database_url: str, engine: Engine, make_tenant: Callable[[], int], tmp_path: Path
) -> None:
    tenant = make_tenant()
    photos = [{"url": f"{HTTP_BASE}/{n}.jpg", "order": i} for i, n in enumerate("ab")]
    insert_legacy_product(engine, tenant, photos, source="stoflow")  # no label, http only
    insert_legacy_product(engine, tenant, [], source="stoflow")  # no image: nothing to audit
    toggles = tmp_path / "toggles.json"
    write_toggles(toggles, [])

    result = audit(database_url, toggles, tenant, HTTP_BASE)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "no payload would publish a label" not in result.stdout
    assert "1 product(s) with images got no payload" in result.stdout
    for name in ("vinted", "ebay", "etsy"):
        assert f"url is not https ({name} fetches https only): 2" in result.stdout


def test_a_tenant_whose_payloads_are_all_built_passes(
    database_url: str, engine: Engine, make_tenant: Callable[[], int], tmp_path: Path
) -> None:
    tenant = make_tenant()
    photos = [{"url": f"{HTTPS_BASE}/{n}.jpg", "order": i} for i, n in enumerate("ab")]
    insert_legacy_product(engine, tenant, photos, source="stoflow")
    insert_legacy_product(engine, tenant, [], source="stoflow")
    toggles = tmp_path / "toggles.json"
    write_toggles(toggles, [])

    result = audit(database_url, toggles, tenant, HTTPS_BASE)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no payload would publish a label" in result.stdout
    assert "got no payload" not in result.stdout
