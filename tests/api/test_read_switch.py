"""The per-tenant read switch through the API: read-table moves a verified tenant's reads
to the table (header and content); others stay on the JSONB; an unverified tenant is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app.core.settings import Settings
from app.main import create_app
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verified_at, verify_tenant
from tests.conftest import bearer
from tests.flags.test_client import write_toggles
from tests.images_db import insert_legacy_product, table_elements

BASE = "http://testserver/media"
LEGACY = [{"url": f"{BASE}/{name}.jpg", "order": i} for i, name in enumerate("ab")] + [
    {"url": f"{BASE}/label.jpg", "order": 2}
]


def migrated_tenant(
    engine: Engine, make_tenant: Callable[[], int], *, verify: bool
) -> tuple[int, int]:
    tenant = make_tenant()
    product = insert_legacy_product(engine, tenant, LEGACY)
    run_tenant(engine, tenant, RunOptions())
    if verify:
        assert verify_tenant(engine, tenant).is_verified
    return tenant, product


def test_read_table_switches_only_the_targeted_verified_tenant(
    settings: Settings, engine: Engine, make_tenant: Callable[[], int], tmp_path: Path
) -> None:
    live, live_product = migrated_tenant(engine, make_tenant, verify=True)
    other, other_product = migrated_tenant(engine, make_tenant, verify=True)
    unverified, unverified_product = migrated_tenant(engine, make_tenant, verify=False)
    toggles = tmp_path / "toggles.json"
    write_toggles(toggles, [str(live), str(unverified)])
    app = create_app(settings.model_copy(update={"flags_file": toggles}), engine)

    with TestClient(app) as client:

        def read(tenant: int, product: int) -> tuple[str, list[bool]]:
            response = client.get(f"/api/products/{product}/images", headers=bearer(tenant))
            assert response.status_code == 200
            labels = [image["is_label"] for image in response.json()["images"]]
            return response.headers["x-images-read-path"], labels

        assert read(live, live_product) == ("table", [False, False, True])
        # The JSONB as served today does not know the label: the bug the switch fixes.
        assert read(other, other_product) == ("jsonb", [False, False, False])
        assert read(unverified, unverified_product) == ("jsonb", [False, False, False])

        write_toggles(toggles, [])  # flip back
        app.state.services.flags.reload()  # what the file watcher does within a second
        assert read(live, live_product)[0] == "jsonb"


def test_the_dual_write_kill_switch_writes_the_jsonb_only_and_forgets_the_rows(
    settings: Settings, engine: Engine, make_tenant: Callable[[], int], tmp_path: Path
) -> None:
    tenant, product = migrated_tenant(engine, make_tenant, verify=True)
    toggles = tmp_path / "toggles.json"
    write_toggles(toggles, [str(tenant)])
    definitions = json.loads(toggles.read_text())
    for feature in definitions["features"]:
        if feature["name"] == "product-images.dual-write":
            feature["enabled"] = False
    toggles.write_text(json.dumps(definitions))
    app = create_app(settings.model_copy(update={"flags_file": toggles}), engine)

    with TestClient(app) as client:
        listed = client.get(f"/api/products/{product}/images", headers=bearer(tenant))
        # read-table is refused while dual-write is off: the table could be stale
        assert listed.headers["x-images-read-path"] == "jsonb"
        added = client.post(
            f"/api/products/{product}/images",
            json={"url": f"{BASE}/new.jpg"},
            headers=bearer(tenant),
        )
    assert added.status_code == 201
    assert table_elements(engine, tenant, product) == []
    assert verified_at(engine, tenant) is None, "the write itself cleared the verified state"
    assert not verify_tenant(engine, tenant).is_verified, "the product counts as unmigrated"
    run_tenant(engine, tenant, RunOptions())
    assert verify_tenant(engine, tenant).is_verified
    assert len(table_elements(engine, tenant, product)) == 4


def test_metrics_count_reads_by_path_refusals_and_write_latency(
    settings: Settings, engine: Engine, make_tenant: Callable[[], int], tmp_path: Path
) -> None:
    unverified, product = migrated_tenant(engine, make_tenant, verify=False)
    toggles = tmp_path / "toggles.json"
    write_toggles(toggles, [str(unverified)])
    with TestClient(create_app(settings.model_copy(update={"flags_file": toggles}), engine)) as c:

        def sample(name: str) -> float:
            for line in c.get("/metrics").text.splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    return float(line.rsplit(" ", 1)[1])
            return 0.0

        reads = sample('product_images_reads_total{path="jsonb"}')
        refusals = sample("product_images_interlock_refusals_total")
        writes = sample('product_images_write_seconds_count{dual_write="true"}')
        c.get(f"/api/products/{product}/images", headers=bearer(unverified))
        c.post(
            f"/api/products/{product}/images",
            json={"url": f"{BASE}/m.jpg"},
            headers=bearer(unverified),
        )
        assert sample('product_images_reads_total{path="jsonb"}') == reads + 1
        assert sample("product_images_interlock_refusals_total") >= refusals + 1
        assert sample('product_images_write_seconds_count{dual_write="true"}') == writes + 1
