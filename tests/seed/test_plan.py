"""The seed plan (pure): the brief's numbers, determinism, and each dirty case exactly."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from app.images.normalise import normalise_legacy
from app.seed.pictures import pool_specs
from app.seed.plan import (
    DIRTY_CASES,
    LEGACY_SOURCE,
    PlannedProduct,
    SeedPlan,
    build_plan,
    dirty_counts,
)

BASE = "http://testserver/media"
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00")
_plans: dict[tuple[int, int, int, int], SeedPlan] = {}


def url_for(key: str) -> str:
    return f"{BASE}/{key}"


def plan(seed: int = 42, tenants: int = 12, products: int = 3282, labels: int = 611) -> SeedPlan:
    """The plan for these flags (memoised: plans are pure, so equal arguments, equal plans)."""
    arguments = (seed, tenants, products, labels)
    if arguments not in _plans:
        photos, label_pool = pool_specs(seed)
        _plans[arguments] = build_plan(
            seed=seed,
            tenants=tenants,
            products=products,
            labels=labels,
            url_for=url_for,
            photo_pool=photos,
            label_pool=label_pool,
        )
    return _plans[arguments]


def numeric_order(value: Any) -> int:
    assert isinstance(value, int | str) and not isinstance(value, bool), value
    return int(value)


def last_by_the_rule(images: list[Any]) -> dict[str, Any]:
    """Sort the elements with a url by (order as a number, position); take the last one."""
    candidates = [
        (numeric_order(element["order"]), position, element)
        for position, element in enumerate(images)
        if isinstance(element, dict) and "url" in element
    ]
    return max(candidates, key=lambda item: (item[0], item[1]))[2]


def label_urls(product: PlannedProduct) -> set[str]:
    return {url_for(o.key) for o in product.objects if o.is_label}


def dirty_cases_found(product: PlannedProduct) -> set[str]:
    """The dirty cases a product's JSON shows, read from the JSON (and the storage plan)."""
    images = product.images
    if not isinstance(images, list):
        return {"column_not_array"}
    if not images:
        return {"empty_arrays"}
    found = set()
    if any(not isinstance(element, dict) for element in images):
        found.add("element_not_object")
    objects = [element for element in images if isinstance(element, dict)]
    if any("url" not in element for element in objects):
        found.add("element_without_url")
    with_url = [element for element in objects if "url" in element]
    if any("created_at" not in element for element in with_url):
        found.add("missing_created_at")
    if any(isinstance(element["order"], str) for element in objects):
        found.add("order_as_string")
    orders = [numeric_order(element["order"]) for element in objects]
    if len(set(orders)) != len(orders):
        found.add("order_duplicates")
    elif sorted(orders) != list(range(len(orders))):
        found.add("order_gaps")
    urls = [element["url"] for element in with_url]
    if len(set(urls)) != len(urls):
        found.add("duplicate_urls")
    stored = {url_for(o.key) for o in product.objects}
    if any(url not in stored for url in urls):
        found.add("missing_objects")
    return found


def test_the_default_plan_has_the_briefs_numbers() -> None:
    seeded = plan()
    products = list(seeded.all_products())
    assert len(seeded.tenants) == 12
    assert seeded.products == len(products) == 3282
    assert sum(p.source == LEGACY_SOURCE for p in products) == seeded.labelled == 611
    assert 18_000 <= seeded.images <= 22_000
    assert len({len(tenant.products) for tenant in seeded.tenants}) > 6, "uneven shop sizes"
    sources = Counter(p.source for p in products if p.source != LEGACY_SOURCE)
    assert sources.most_common(1)[0][0] == "stoflow"
    assert set(sources) == {"stoflow", "vinted_import", "manual"}
    assert [t.email for t in seeded.tenants] == [f"seed42-shop{i}@example.com" for i in range(12)]


def test_every_legacy_product_has_a_photo_then_its_label_last_by_the_rule() -> None:
    for product in plan().all_products():
        if product.source != LEGACY_SOURCE:
            assert not label_urls(product), "labels only on pythonApiWOO products"
            continue
        assert isinstance(product.images, list)
        assert len(product.images) >= 2
        labels = label_urls(product)
        assert len(labels) == 1
        assert last_by_the_rule(product.images)["url"] in labels
        urls = [e.get("url") if isinstance(e, dict) else e for e in product.images]
        assert sum(url in labels for url in urls) == 1


def test_the_migrations_normaliser_labels_the_seeded_label_on_every_legacy_product() -> None:
    for product in plan().all_products():
        if product.source != LEGACY_SOURCE:
            continue
        normalised = normalise_legacy(
            product.images,
            product_id=1,
            product_created_at=product.created_at,
            is_legacy_source=True,
        )
        labelled = [image.url for image in normalised.images if image.is_label]
        assert labelled == sorted(label_urls(product))


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    photos, labels = pool_specs(7)
    again = build_plan(
        seed=7,
        tenants=12,
        products=3282,
        labels=611,
        url_for=url_for,
        photo_pool=photos,
        label_pool=labels,
    )
    assert plan(seed=7) == again
    assert list(plan(seed=7).all_products()) != list(plan(seed=8).all_products())


def test_each_dirty_case_is_on_the_reported_number_of_disjoint_products() -> None:
    seeded = plan()
    assert dict(seeded.dirty) == dirty_counts(3282)
    assert all(seeded.dirty[case] >= 1 for case in DIRTY_CASES)
    found: Counter[str] = Counter()
    for product in seeded.all_products():
        cases = dirty_cases_found(product)
        assert len(cases) <= 1, (product.title, cases)
        assert cases == ({product.dirty} if product.dirty else set())
        found.update(cases)
    assert {case: found[case] for case in DIRTY_CASES} == dict(seeded.dirty)


def test_some_dirty_cases_land_on_legacy_products_but_never_take_their_label() -> None:
    legacy_dirty = {p.dirty for p in plan().all_products() if p.has_label and p.dirty}
    assert len(legacy_dirty) >= 4
    assert not legacy_dirty & {"empty_arrays", "column_not_array"}
    for product in plan().all_products():
        assert not set(product.missing_keys) & {o.key for o in product.objects}
        if product.has_label:
            assert not {url_for(key) for key in product.missing_keys} & label_urls(product)


def test_elements_have_the_legacy_keys_and_timestamps_only() -> None:
    keys: list[str] = []
    for product in plan().all_products():
        assert (
            datetime(2023, 1, 1, tzinfo=UTC)
            <= product.created_at
            < datetime(2026, 1, 1, tzinfo=UTC)
        )
        assert product.updated_at >= product.created_at
        keys.extend(o.key for o in product.objects)
        elements = product.images if isinstance(product.images, list) else [product.images]
        for element in elements:
            if isinstance(element, dict):
                assert set(element) <= {"url", "order", "created_at"}
                if "created_at" in element:
                    assert STAMP.fullmatch(element["created_at"]), element["created_at"]
    assert len(keys) == len(set(keys)), "every object has its own key"
    assert all(re.fullmatch(r"seed42/t\d+/p\d+/\d+\.(jpg|png|webp)", key) for key in keys)


@pytest.mark.parametrize(("tenants", "products", "labels"), [(2, 50, 10), (3, 240, 40), (1, 5, 5)])
def test_scaling_flags_change_the_numbers(tenants: int, products: int, labels: int) -> None:
    scaled = plan(seed=3, tenants=tenants, products=products, labels=labels)
    assert len(scaled.tenants) == tenants
    assert scaled.products == products
    assert scaled.labelled == labels
    assert all(len(t.products) >= 1 for t in scaled.tenants)
    found: Counter[str] = Counter()
    for product in scaled.all_products():
        found.update(dirty_cases_found(product))
        if product.has_label:
            assert last_by_the_rule(product.images)["url"] in label_urls(product)
    assert {case: found[case] for case in DIRTY_CASES} == dict(scaled.dirty)
    if products >= 200:
        assert all(count >= 1 for count in scaled.dirty.values())


def test_labels_cannot_exceed_products() -> None:
    with pytest.raises(ValueError, match="labels"):
        plan(seed=1, tenants=1, products=3, labels=4)
