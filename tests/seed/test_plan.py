"""The seed plan (pure): the brief's numbers, determinism, and each dirty case exactly."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from app.images.normalise import usable_order
from app.seed.plan import DIRTY_AT_BRIEF_SCALE, LEGACY_SOURCE, SeedPlan, build_plan

BASE = "http://testserver/media"


def plan(seed: int = 42, tenants: int = 12, products: int = 3282, labels: int = 611) -> SeedPlan:
    return build_plan(
        seed=seed,
        tenants=tenants,
        products=products,
        labels=labels,
        url_for=lambda key: f"{BASE}/{key}",
        photo_extensions=["jpg", "png", "webp"] * 16,
        label_extensions=["jpg"] * 12,
    )


def products_of(seed_plan: SeedPlan) -> list[Any]:
    return [product for tenant in seed_plan.tenants for product in tenant.products]


def last_by_rule(images: list[Any]) -> Any:
    accepted = [(i, e) for i, e in enumerate(images) if isinstance(e, dict) and "url" in e]

    def key(item: tuple[int, Any]) -> tuple[bool, Decimal, int]:
        order = usable_order(item[1].get("order"))
        return (order is None, order or Decimal(0), item[0])

    return sorted(accepted, key=key)[-1][1]


def test_the_default_plan_has_the_briefs_numbers() -> None:
    seeded = plan()
    products = products_of(seeded)
    assert len(seeded.tenants) == 12
    assert len(products) == 3282
    legacy = [p for p in products if p.source == LEGACY_SOURCE]
    assert len(legacy) == 611
    assert all(p.has_label for p in legacy)
    assert 18_000 < seeded.elements < 22_000
    sizes = {len(t.products) for t in seeded.tenants}
    assert len(sizes) > 1, "shops have uneven sizes"


def test_every_legacy_product_has_a_label_last_by_the_rule_and_at_least_one_photo() -> None:
    for product in products_of(plan()):
        if product.source != LEGACY_SOURCE:
            continue
        assert isinstance(product.images, list)
        assert len(product.images) >= 2
        assert last_by_rule(product.images)["url"].rsplit("/", 1)[-1].startswith("label.")


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    assert plan(seed=7) == plan(seed=7)
    assert products_of(plan(seed=7)) != products_of(plan(seed=8))


def test_each_dirty_case_is_on_the_reported_number_of_products() -> None:
    seeded = plan()
    products = products_of(seeded)
    assert seeded.dirty == DIRTY_AT_BRIEF_SCALE
    found: Counter[str] = Counter()
    for product in products:
        images = product.images
        if not isinstance(images, list):
            found["column_not_array"] += 1
            continue
        if not images:
            found["empty_arrays"] += 1
        objects = [e for e in images if isinstance(e, dict)]
        orders = [e.get("order") for e in objects]
        if any(isinstance(o, str) for o in orders):
            found["order_as_string"] += 1
        numeric = [o for o in orders if isinstance(o, int)]
        if numeric and len(numeric) != len(set(numeric)):
            found["order_duplicates"] += 1
        if numeric and len(set(numeric)) == len(numeric) and max(numeric) >= len(numeric):
            found["order_gaps"] += 1
        if any("created_at" not in e for e in objects if "url" in e):
            found["missing_created_at"] += 1
        urls = [e["url"] for e in objects if "url" in e]
        if len(urls) != len(set(urls)):
            found["duplicate_urls"] += 1
        if any("url" not in e for e in objects):
            found["element_without_url"] += 1
        if any(not isinstance(e, dict) for e in images):
            found["element_not_object"] += 1
        stored = {o.key for o in product.objects}
        if any(url.removeprefix(f"{BASE}/") not in stored for url in urls):
            found["missing_objects"] += 1
    assert dict(found) == seeded.dirty


def test_scaling_flags_change_the_numbers() -> None:
    small = plan(tenants=2, products=50, labels=10)
    assert len(small.tenants) == 2
    assert small.products == 50
    assert small.labelled == 10
    assert sum(small.dirty.values()) <= 40
