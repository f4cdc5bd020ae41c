"""The demo data as a pure plan: tenants, products shaped like the brief, their legacy JSONB
images with the dirty history a real system has, and the objects to store. No I/O."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

LEGACY_SOURCE = "pythonApiWOO"
# How many products of the brief's 3,282 carry each dirty case; scaled with --products.
DIRTY_AT_BRIEF_SCALE = {
    "order_gaps": 120,
    "order_duplicates": 80,
    "order_as_string": 90,
    "missing_created_at": 150,
    "duplicate_urls": 40,
    "empty_arrays": 60,
    "missing_objects": 30,
    "element_without_url": 15,
    "element_not_object": 10,
    "column_not_array": 6,
}
BRIEF_PRODUCTS = 3282
BRANDS = ("Levi's", "Nike", "Zara", "Adidas", "H&M", "Mango", "Carhartt", "Lacoste", None)
ITEMS = ("jeans", "sneakers", "jacket", "hoodie", "dress", "t-shirt", "bag", "boots", "coat")
SIZES = ("XS", "S", "M", "L", "XL", "W30", "W32", "38", "40", "42")


@dataclass(frozen=True)
class StoredPicture:
    """An object to put in storage: its key and which pool picture it holds."""

    key: str
    picture: int
    is_label: bool


@dataclass(frozen=True)
class PlannedProduct:
    """One product row and its legacy images value."""

    title: str
    description: str
    brand: str | None
    price: Decimal
    status: str
    source: str
    created_at: datetime
    images: Any  # the JSON value of products.images (usually a list, sometimes not)
    dirty: frozenset[str]
    objects: tuple[StoredPicture, ...]
    has_label: bool


@dataclass(frozen=True)
class PlannedTenant:
    """A shop and its products."""

    email: str
    display_name: str
    products: tuple[PlannedProduct, ...]


@dataclass(frozen=True)
class SeedPlan:
    """Everything `seed` will create."""

    seed: int
    tenants: tuple[PlannedTenant, ...]
    dirty: dict[str, int] = field(default_factory=dict)

    @property
    def products(self) -> int:
        """Products across tenants."""
        return sum(len(t.products) for t in self.tenants)

    @property
    def labelled(self) -> int:
        """pythonApiWOO products carrying a label last."""
        return sum(p.has_label for t in self.tenants for p in t.products)

    @property
    def elements(self) -> int:
        """JSONB elements (a non-array column counts as one)."""
        return sum(
            len(p.images) if isinstance(p.images, list) else 1
            for t in self.tenants
            for p in t.products
        )

    @property
    def stored_objects(self) -> int:
        """Objects put in storage."""
        return sum(len(p.objects) for t in self.tenants for p in t.products)


def dirty_counts(products: int, legacy: int) -> dict[str, int]:
    """Products per dirty case, proportional to the brief's; at least one each from 200."""
    counts = {}
    for case, at_brief in DIRTY_AT_BRIEF_SCALE.items():
        scaled = round(at_brief * products / BRIEF_PRODUCTS)
        counts[case] = max(scaled, 1) if products >= 200 else scaled
    room = products - legacy  # dirty cases land on non-legacy products only
    while sum(counts.values()) > room:
        largest = max(counts, key=lambda case: counts[case])
        counts[largest] -= 1
    return counts


def _split(total: int, parts: int, rng: random.Random) -> list[int]:
    """Uneven shop sizes that add up to `total`."""
    weights = [rng.uniform(0.3, 2.0) for _ in range(parts)]
    sizes = [int(total * w / sum(weights)) for w in weights]
    for index in range(total - sum(sizes)):
        sizes[index % parts] += 1
    return sizes


def build_plan(
    *,
    seed: int,
    tenants: int,
    products: int,
    labels: int,
    url_for: Callable[[str], str],
    photo_extensions: Sequence[str],
    label_extensions: Sequence[str],
) -> SeedPlan:
    """The whole demo data set, deterministic from the seed."""
    if labels > products:
        raise ValueError("labels cannot exceed products")
    rng = random.Random(seed)
    base = datetime(2023, 1, 1, tzinfo=UTC) + timedelta(days=rng.randint(0, 30))
    indices = list(range(products))
    rng.shuffle(indices)
    legacy = set(indices[:labels])
    counts = dirty_counts(products, labels)
    dirty_of: dict[int, str] = {}
    others = indices[labels:]
    cursor = 0
    for case, count in counts.items():
        for index in others[cursor : cursor + count]:
            dirty_of[index] = case
        cursor += count

    planned: list[PlannedProduct] = []
    for index in range(products):
        planned.append(
            _product(
                rng,
                seed,
                index,
                base,
                index in legacy,
                dirty_of.get(index),
                url_for,
                photo_extensions,
                label_extensions,
            )
        )
    sizes = _split(products, tenants, rng)
    shops, start = [], 0
    for shop, size in enumerate(sizes):
        shops.append(
            PlannedTenant(
                email=f"seed{seed}-shop{shop}@example.com",
                display_name=f"Shop {shop} (seed {seed})",
                products=tuple(planned[start : start + size]),
            )
        )
        start += size
    return SeedPlan(seed=seed, tenants=tuple(shops), dirty=counts)


def _product(
    rng: random.Random,
    seed: int,
    index: int,
    base: datetime,
    is_legacy: bool,
    dirty: str | None,
    url_for: Callable[[str], str],
    photo_extensions: Sequence[str],
    label_extensions: Sequence[str],
) -> PlannedProduct:
    brand = rng.choice(BRANDS)
    item = rng.choice(ITEMS)
    title = f"{brand or 'Vintage'} {item} {rng.choice(SIZES)}"
    created = base + timedelta(minutes=rng.randint(0, 3 * 365 * 24 * 60))
    photos = rng.choices(range(1, 13), weights=(3, 6, 9, 11, 12, 12, 11, 9, 7, 5, 3, 2))[0]
    if dirty in ("order_duplicates", "duplicate_urls", "missing_created_at"):
        photos = max(photos, 2)
    objects: list[StoredPicture] = []
    elements: list[dict[str, Any]] = []
    for n in range(photos):
        picture = rng.randrange(len(photo_extensions))
        key = f"seed{seed}/p{index}/{n}.{photo_extensions[picture]}"
        objects.append(StoredPicture(key, picture, is_label=False))
        elements.append({"url": url_for(key), "created_at": _stamp(created, n)})
    if dirty == "duplicate_urls":
        elements.append(dict(elements[0]))
    if dirty == "element_without_url":
        elements.insert(rng.randrange(len(elements) + 1), {"created_at": _stamp(created, 9)})
    if dirty == "element_not_object":
        elements.insert(rng.randrange(len(elements) + 1), elements[0]["url"])
    if dirty == "missing_objects":
        objects.pop(rng.randrange(len(objects)))  # its element still points at it: never stored
    if is_legacy:
        picture = rng.randrange(len(label_extensions))
        key = f"seed{seed}/p{index}/label.{label_extensions[picture]}"
        objects.append(StoredPicture(key, picture, is_label=True))
        elements.append({"url": url_for(key), "created_at": _stamp(created, photos)})
    _number(elements, dirty, rng)
    images: Any = elements
    if dirty == "empty_arrays":
        images, objects = [], []
    elif dirty == "column_not_array":
        images = None if index % 2 else {"url": elements[0]["url"], "order": 0}
        objects = []
    return PlannedProduct(
        title=title,
        description=f"{title}, good condition. Ships in 48 h.",
        brand=brand,
        price=Decimal(rng.randint(300, 25000)) / 100,
        status=rng.choices(("active", "draft", "sold", "archived"), weights=(6, 2, 2, 1))[0],
        source=LEGACY_SOURCE
        if is_legacy
        else rng.choices(("stoflow", "vinted_import", "manual"), weights=(8, 2, 1))[0],
        created_at=created,
        images=images,
        dirty=frozenset({dirty} if dirty else ()),
        objects=tuple(objects),
        has_label=is_legacy,
    )


def _stamp(created: datetime, n: int) -> str:
    return (created + timedelta(seconds=n)).isoformat(timespec="microseconds")


def _number(elements: list[Any], dirty: str | None, rng: random.Random) -> None:
    """Give each object element its legacy `order` (the last one, the label, stays last)."""
    objects = [e for e in elements if isinstance(e, dict)]
    for position, element in enumerate(objects):
        element["order"] = position
    if dirty == "order_gaps":
        value = rng.randint(1, 2)  # never starts at 0: a gap even with one element
        for element in objects:
            element["order"] = value
            value += rng.randint(1, 4)
    elif dirty == "order_duplicates":  # two photos share an order (never the label)
        objects[1]["order"] = objects[0]["order"]
    elif dirty == "order_as_string":
        for element in objects:
            element["order"] = str(element["order"])
    elif dirty == "missing_created_at":
        for element in objects[:-1]:
            element.pop("created_at", None)
