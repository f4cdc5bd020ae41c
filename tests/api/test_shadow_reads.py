"""Shadow reads: both representations compared in one snapshot; a difference injected in
SQL is classified, logged, counted and sampled; drift on a table-reading tenant sends its
reads back to the JSONB at once, and `backfill verify` brings it back."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from app.core.database import tenant_schema, unit_of_work
from app.core.settings import Settings
from app.images.differences import Difference
from app.main import create_app
from app.repositories import shadow_reads
from backfill.runner import RunOptions, run_tenant
from backfill.verify import verify_tenant
from tests.api.test_read_switch import BASE, migrated_tenant
from tests.conftest import bearer
from tests.flags.test_client import write_toggles
from tests.images_db import insert_legacy_product


def sql(engine: Engine, tenant: int, statement: str) -> list[tuple[object, ...]]:
    with engine.begin() as connection:
        connection.execute(text(f'SET LOCAL search_path TO "{tenant_schema(tenant)}"'))
        result = connection.execute(text(statement))
        return [tuple(row) for row in result] if result.returns_rows else []


def is_verified(engine: Engine, tenant: int) -> bool:
    return bool(
        sql(engine, tenant, "SELECT verified_at IS NOT NULL FROM image_migration_state")[0][0]
    )


def metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def app_for(settings: Settings, engine: Engine, tmp_path: Path) -> Callable[..., TestClient]:
    def build(*, read_table: list[int], shadow: list[int]) -> TestClient:
        toggles = tmp_path / "toggles.json"
        write_toggles(
            toggles, [str(t) for t in read_table], shadow_tenants=[str(t) for t in shadow]
        )
        return TestClient(
            create_app(
                settings.model_copy(update={"flags_file": toggles, "log_format": "json"}), engine
            )
        )

    return build


def images_of(client: TestClient, tenant: int, product: int) -> tuple[str, list[str]]:
    response = client.get(f"/api/products/{product}/images", headers=bearer(tenant))
    assert response.status_code == 200, response.text
    return response.headers["x-images-read-path"], [i["url"] for i in response.json()["images"]]


def test_shadow_on_jsonb_reads_records_an_injected_difference_and_unverifies(
    engine: Engine,
    make_tenant: Callable[[], int],
    app_for: Callable[..., TestClient],
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant, product = migrated_tenant(engine, make_tenant, verify=True)
    with app_for(read_table=[], shadow=[tenant]) as client:
        assert images_of(client, tenant, product)[0] == "jsonb"
        assert sql(engine, tenant, "SELECT count(*) FROM shadow_mismatches") == [(0,)]
        mismatches = metric(client, 'product_images_shadow_mismatches_total{kind="field_differs"}')
        sql(engine, tenant, "UPDATE product_images SET url = url || '?x' WHERE \"order\" = 1")

        path, urls = images_of(client, tenant, product)

        assert path == "jsonb"
        assert urls == [f"{BASE}/a.jpg", f"{BASE}/b.jpg", f"{BASE}/label.jpg"], "JSONB answers"
        assert (
            metric(client, 'product_images_shadow_mismatches_total{kind="field_differs"}')
            == mismatches + 1
        )
    sample = sql(
        engine, tenant, "SELECT product_id, kind, detail, read_path FROM shadow_mismatches"
    )
    assert [(row[0], row[1], row[3]) for row in sample] == [(product, "field_differs", "jsonb")]
    assert "url" in str(sample[0][2])
    logs = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line[:1] == "{"]
    events = [e for e in logs if e["event"] == "images.shadow_mismatch"]
    assert events and events[0]["kind"] == "field_differs" and events[0]["product"] == product
    assert events[0]["jsonb_ids"] == events[0]["table_ids"]
    assert not is_verified(engine, tenant), "a mismatch disproves the verified state"


@pytest.mark.parametrize(
    ("injection", "kind"),
    [
        ('DELETE FROM product_images WHERE "order" = 2', "missing"),
        (
            'INSERT INTO product_images (id, product_id, url, "order") '
            'SELECT gen_random_uuid(), product_id, url, 3 FROM product_images WHERE "order" = 0',
            "duplicate",
        ),
        (
            'INSERT INTO product_images (id, product_id, url, "order") '
            "SELECT gen_random_uuid(), product_id, 'http://testserver/media/z.jpg', 3 "
            'FROM product_images WHERE "order" = 0',
            "extra",
        ),
        (
            'UPDATE product_images SET "order" = CASE "order" WHEN 0 THEN 1 WHEN 1 THEN 0 END '
            'WHERE "order" IN (0, 1)',
            "reordered",
        ),
    ],
)
def test_drift_on_a_table_reading_tenant_falls_back_to_the_jsonb_at_once(
    engine: Engine,
    make_tenant: Callable[[], int],
    app_for: Callable[..., TestClient],
    injection: str,
    kind: str,
) -> None:
    tenant, product = migrated_tenant(engine, make_tenant, verify=True)
    with app_for(read_table=[tenant], shadow=[tenant]) as client:
        assert images_of(client, tenant, product)[0] == "table"
        fallbacks = metric(client, 'product_images_drift_fallbacks_total{found_by="shadow-read"}')
        sql(engine, tenant, injection)

        path, urls = images_of(client, tenant, product)

        assert path == "jsonb", "the drifting read itself is answered from the JSONB"
        assert urls == [f"{BASE}/a.jpg", f"{BASE}/b.jpg", f"{BASE}/label.jpg"]
        assert not is_verified(engine, tenant)
        assert (
            metric(client, 'product_images_drift_fallbacks_total{found_by="shadow-read"}')
            == fallbacks + 1
        )
        assert images_of(client, tenant, product)[0] == "jsonb", "the interlock holds it there"
        kinds = sql(engine, tenant, "SELECT DISTINCT kind FROM shadow_mismatches")
        assert (kind,) in kinds

        # The fix: rebuild the product's rows, verify; reads go back to the table.
        sql(engine, tenant, f"DELETE FROM product_images WHERE product_id = {product}")
        run_tenant(engine, tenant, RunOptions())
        assert verify_tenant(engine, tenant).is_verified
        assert images_of(client, tenant, product)[0] == "table"


def test_shadow_reads_see_no_false_mismatch_under_concurrent_writes(
    engine: Engine, make_tenant: Callable[[], int], app_for: Callable[..., TestClient]
) -> None:
    tenant, product = migrated_tenant(engine, make_tenant, verify=True)
    stop = threading.Event()
    with app_for(read_table=[tenant], shadow=[tenant]) as client:
        ids = [
            i["id"]
            for i in client.get(f"/api/products/{product}/images", headers=bearer(tenant)).json()[
                "images"
            ]
        ]

        statuses: list[int] = []

        def writer() -> None:
            order = list(ids)
            while not stop.is_set():
                order = order[1:] + order[:1]
                response = client.put(
                    f"/api/products/{product}/images/order",
                    json={"image_ids": order},
                    headers=bearer(tenant),
                )
                statuses.append(response.status_code)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            paths = [images_of(client, tenant, product)[0] for _ in range(150)]
        finally:
            stop.set()
            thread.join()
    assert set(paths) == {"table"}
    assert len(statuses) > 10 and set(statuses) == {200}, "the writes really interleaved"
    assert sql(engine, tenant, "SELECT count(*) FROM shadow_mismatches") == [(0,)]
    assert is_verified(engine, tenant)


def test_the_sample_keeps_the_latest_mismatches_only(
    engine: Engine, make_tenant: Callable[[], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = make_tenant()
    products = [
        insert_legacy_product(engine, tenant, [{"url": f"{BASE}/{n}.jpg"}]) for n in range(6)
    ]
    monkeypatch.setattr(shadow_reads, "SAMPLE_SIZE", 4)
    with unit_of_work(engine, tenant) as session:
        for product in products:
            record_one(session, product, "missing")
        kept = shadow_reads.sampled(session)
    assert [m.product_id for m in kept] == products[::-1][:4]


def test_a_repeated_mismatch_is_sampled_once_a_minute(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    product = insert_legacy_product(engine, tenant, [{"url": f"{BASE}/a.jpg"}])
    with unit_of_work(engine, tenant) as session:
        for kind in ("missing", "missing", "reordered"):
            record_one(session, product, kind)
        kept = shadow_reads.sampled(session)
    assert sorted(m.kind for m in kept) == ["missing", "reordered"]


def record_one(session: Session, product: int, kind: str) -> None:
    both = shadow_reads.read_both(session, product)
    assert both is not None
    shadow_reads.record_mismatches(
        session, both, [Difference(product, kind, "injected")], read_path="jsonb"
    )


def test_read_both_is_none_for_an_unknown_product(
    engine: Engine, make_tenant: Callable[[], int]
) -> None:
    tenant = make_tenant()
    with unit_of_work(engine, tenant) as session:
        assert shadow_reads.read_both(session, 10**12) is None
