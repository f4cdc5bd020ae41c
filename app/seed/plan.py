"""The demo data as a pure plan: tenants, products shaped like the brief, their legacy JSONB
`images` with the dirty history a real system has, and which objects to store.

No I/O and no clock: everything derives from the seed (dates included), and URLs come from
the `url_for` callable passed in, so the same arguments always give an equal plan.

Over 300 lines because each dirty shape of the brief's history is one small pure function,
kept beside the others so that one read shows every shape the seed makes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from app.seed.catalogue import listing

LEGACY_SOURCE = "pythonApiWOO"
OTHER_SOURCES = ("stoflow", "vinted_import", "manual")
OTHER_SOURCE_WEIGHTS = (85, 10, 5)
STATUSES = ("active", "draft", "sold", "archived")
STATUS_WEIGHTS = (60, 15, 18, 7)
BRIEF_PRODUCTS = 3282
# Products carrying each dirty case at the brief's scale (3,282 products), scaled linearly
# with --products; from MIN_PRODUCTS_FOR_EVERY_CASE products on, every case has at least one.
DIRTY_AT_BRIEF_SCALE: Mapping[str, int] = {
    "order_gaps": 140,
    "order_duplicates": 60,
    "order_as_string": 90,
    "missing_created_at": 120,
    "duplicate_urls": 45,
    "empty_arrays": 70,
    "missing_objects": 25,
    "element_without_url": 12,
    "element_not_object": 9,
    "column_not_array": 6,
}
DIRTY_CASES = tuple(DIRTY_AT_BRIEF_SCALE)
# These would take the label away from a legacy product, so they only hit other products.
NEVER_ON_LABELLED = ("empty_arrays", "column_not_array")
MIN_PRODUCTS_FOR_EVERY_CASE = 200
# Photos per product (1..12); with the labels this gives ~20,000 elements for 3,282 products.
PHOTO_COUNTS = tuple(range(1, 13))
PHOTO_COUNT_WEIGHTS = (3, 6, 9, 11, 12, 12, 11, 9, 7, 5, 3, 2)
# Products were created over 2023-2025; the old importer's ones in the first part.
CATALOGUE_DAYS = 3 * 365 - 40
LEGACY_SHARE_OF_WINDOW = 0.45


class PoolPicture(Protocol):
    """What the plan needs to know about a picture of the pool."""

    @property
    def kind(self) -> str:
        """garment, shoe, bag or label."""
        ...

    @property
    def extension(self) -> str:
        """The file extension its key ends with."""
        ...


@dataclass(frozen=True)
class PlannedObject:
    """An object to store: its key and which pool picture it holds."""

    key: str
    picture: int  # index in the photo pool, or in the label pool when is_label
    is_label: bool


@dataclass(frozen=True)
class PlannedProduct:
    """One product row, its legacy `images` value and its objects."""

    index: int  # within its tenant, as in its keys
    title: str
    description: str
    brand: str | None
    price: Decimal
    status: str
    source: str
    created_at: datetime
    updated_at: datetime
    images: Any  # the JSON value of products.images: usually a list, sometimes not
    dirty: str | None  # the one dirty case this product carries, if any
    objects: tuple[PlannedObject, ...]  # to store
    missing_keys: tuple[str, ...]  # referenced by `images` but never stored

    @property
    def has_label(self) -> bool:
        """Whether this is a legacy product with its label last."""
        return self.source == LEGACY_SOURCE


@dataclass(frozen=True)
class PlannedTenant:
    """A shop and its products."""

    index: int
    email: str
    display_name: str
    products: tuple[PlannedProduct, ...]


@dataclass(frozen=True)
class SeedPlan:
    """Everything `seed` will create, with its counts."""

    seed: int
    tenants: tuple[PlannedTenant, ...]
    dirty: Mapping[str, int]  # products per dirty case, as planned

    def all_products(self) -> Iterator[PlannedProduct]:
        """Every product, tenant by tenant."""
        for tenant in self.tenants:
            yield from tenant.products

    @property
    def products(self) -> int:
        """Products across tenants."""
        return sum(len(tenant.products) for tenant in self.tenants)

    @property
    def labelled(self) -> int:
        """pythonApiWOO products, each carrying a label last."""
        return sum(product.has_label for product in self.all_products())

    @property
    def images(self) -> int:
        """Elements of the `images` arrays (columns that are not arrays hold none)."""
        return sum(
            len(product.images)
            for product in self.all_products()
            if isinstance(product.images, list)
        )

    @property
    def stored_objects(self) -> int:
        """Objects to put in storage."""
        return sum(len(product.objects) for product in self.all_products())


def tenant_email(seed: int, index: int) -> str:
    """The email of a seeded shop; a second run of the same seed finds it taken."""
    return f"seed{seed}-shop{index}@example.com"


def dirty_counts(products: int) -> dict[str, int]:
    """Products wanted per dirty case: the brief's figures scaled to `products`."""
    counts = {}
    for case, at_brief in DIRTY_AT_BRIEF_SCALE.items():
        scaled = round(at_brief * products / BRIEF_PRODUCTS)
        counts[case] = max(scaled, 1) if products >= MIN_PRODUCTS_FOR_EVERY_CASE else scaled
    return counts


def build_plan(
    *,
    seed: int,
    tenants: int,
    products: int,
    labels: int,
    url_for: Callable[[str], str],
    photo_pool: Sequence[PoolPicture],
    label_pool: Sequence[PoolPicture],
) -> SeedPlan:
    """The whole demo data set, deterministic from its arguments."""
    if tenants < 1:
        raise ValueError(f"tenants must be at least 1, got {tenants}")
    if not 0 <= labels <= products:
        raise ValueError(f"labels must be between 0 and products ({products}), got {labels}")
    if not photo_pool or not label_pool:
        raise ValueError("the picture pool needs at least one photo and one label")
    rng = random.Random(f"seed-plan-{seed}")
    start = datetime(2023, 1, 1, 8, tzinfo=UTC) + timedelta(days=rng.randint(0, 30))
    sizes = _shop_sizes(products, tenants, rng)
    shuffled = list(range(products))
    rng.shuffle(shuffled)
    legacy = set(shuffled[:labels])
    dirty_of = _assign_dirty(dirty_counts(products), shuffled, labels, rng)
    photos_by_kind: dict[str, list[int]] = {}
    for position, picture in enumerate(photo_pool):
        photos_by_kind.setdefault(picture.kind, []).append(position)
    maker = _ProductMaker(rng, start, url_for, photo_pool, label_pool, photos_by_kind)

    shops: list[PlannedTenant] = []
    number = 0
    for shop, size in enumerate(sizes):
        planned = []
        for index in range(size):
            prefix = f"seed{seed}/t{shop}/p{index}"
            planned.append(maker.make(index, prefix, number in legacy, dirty_of.get(number)))
            number += 1
        shops.append(
            PlannedTenant(
                index=shop,
                email=tenant_email(seed, shop),
                display_name=f"Demo shop {shop + 1} (seed {seed})",
                products=tuple(planned),
            )
        )
    counts = {case: 0 for case in DIRTY_CASES}
    for case in dirty_of.values():
        counts[case] += 1
    return SeedPlan(seed=seed, tenants=tuple(shops), dirty=counts)


def _shop_sizes(products: int, tenants: int, rng: random.Random) -> list[int]:
    """Uneven shop sizes (a few big shops, many small ones) adding up to `products`."""
    weights = [rng.lognormvariate(0, 0.8) for _ in range(tenants)]
    floor = 1 if products >= tenants else 0
    rest = products - floor * tenants
    sizes = [floor + int(rest * weight / sum(weights)) for weight in weights]
    by_weight = sorted(range(tenants), key=lambda shop: -weights[shop])
    for step in range(products - sum(sizes)):
        sizes[by_weight[step % tenants]] += 1
    return sizes


def _assign_dirty(
    wanted: Mapping[str, int], shuffled: Sequence[int], labels: int, rng: random.Random
) -> dict[int, str]:
    """Disjoint products per case; label-removing cases only on products without a label."""
    unlabelled = list(shuffled[labels:])
    anyone = list(shuffled)
    rng.shuffle(anyone)
    dirty_of: dict[int, str] = {}
    ordered = [c for c in DIRTY_CASES if c in NEVER_ON_LABELLED] + [
        c for c in DIRTY_CASES if c not in NEVER_ON_LABELLED
    ]
    for case in ordered:
        candidates = iter(unlabelled if case in NEVER_ON_LABELLED else anyone)
        for _ in range(wanted[case]):
            number = next((n for n in candidates if n not in dirty_of), None)
            if number is None:
                break  # fewer products than dirty cases: the plan reports what it placed
            dirty_of[number] = case
    return dirty_of


def _stamp(moment: datetime) -> str:
    """The legacy element timestamp, e.g. 2024-03-02T10:11:12.123456+00:00."""
    return moment.isoformat(timespec="microseconds")


def _renumber(elements: list[Any]) -> None:
    """Give the object elements `order` 0..n-1 in array position."""
    for order, element in enumerate(e for e in elements if isinstance(e, dict)):
        element["order"] = order


@dataclass
class _ProductMaker:
    rng: random.Random
    start: datetime
    url_for: Callable[[str], str]
    photo_pool: Sequence[PoolPicture]
    label_pool: Sequence[PoolPicture]
    photos_by_kind: dict[str, list[int]]

    def make(self, index: int, prefix: str, is_legacy: bool, dirty: str | None) -> PlannedProduct:
        rng = self.rng
        item = listing(rng)
        window = CATALOGUE_DAYS * (LEGACY_SHARE_OF_WINDOW if is_legacy else 1.0)
        created = self.start + timedelta(
            seconds=rng.randint(0, int(window * 86400)), microseconds=rng.randint(0, 999_999)
        )
        updated = created + timedelta(seconds=rng.randint(0, 200 * 86400))
        photos = rng.choices(PHOTO_COUNTS, weights=PHOTO_COUNT_WEIGHTS)[0]
        if dirty == "order_duplicates":
            photos = max(photos, 2)  # two photos share an order, never the label
        candidates = self.photos_by_kind.get(item.kind) or list(range(len(self.photo_pool)))

        elements: list[Any] = []
        objects: list[PlannedObject] = []
        uploaded = created + timedelta(seconds=rng.randint(5, 900))

        def add(picture: int, is_label: bool) -> None:
            nonlocal uploaded
            pool = self.label_pool if is_label else self.photo_pool
            key = f"{prefix}/{len(objects)}.{pool[picture].extension}"
            objects.append(PlannedObject(key=key, picture=picture, is_label=is_label))
            elements.append(
                {"url": self.url_for(key), "order": len(elements), "created_at": _stamp(uploaded)}
            )
            uploaded += timedelta(seconds=rng.randint(2, 120), microseconds=rng.randint(0, 999_999))

        for _ in range(photos):
            add(rng.choice(candidates), is_label=False)
        if is_legacy:
            # The old pythonApiWOO importer always uploaded the price-tag photo last.
            add(rng.randrange(len(self.label_pool)), is_label=True)
        images, objects, missing = self._dirty(dirty, elements, objects, photos, prefix, candidates)
        return PlannedProduct(
            index=index,
            title=item.title,
            description=item.description,
            brand=item.brand,
            price=item.price,
            status=rng.choices(STATUSES, weights=STATUS_WEIGHTS)[0],
            source=LEGACY_SOURCE
            if is_legacy
            else rng.choices(OTHER_SOURCES, weights=OTHER_SOURCE_WEIGHTS)[0],
            created_at=created,
            updated_at=updated,
            images=images,
            dirty=dirty,
            objects=tuple(objects),
            missing_keys=tuple(missing),
        )

    def _dirty(
        self,
        dirty: str | None,
        elements: list[Any],
        objects: list[PlannedObject],
        photos: int,
        prefix: str,
        candidates: Sequence[int],
    ) -> tuple[Any, list[PlannedObject], list[str]]:
        """Apply the product's dirty case. Photos are elements[:photos]; a label follows them.

        Every case keeps the label last by (order as a number, position in the array).
        """
        rng = self.rng
        missing: list[str] = []
        if dirty == "order_gaps":  # e.g. 0, 2, 5: strictly increasing, never 0..n-1
            value = rng.randint(0, 2)
            for element in elements:
                element["order"] = value
                value += rng.choice((1, 1, 2, 3, 5))
            if [e["order"] for e in elements] == list(range(len(elements))):
                elements[-1]["order"] += rng.randint(1, 3)
        elif dirty == "order_duplicates":  # e.g. 0, 1, 1, 2: photo j shares photo j-1's order
            shared = rng.randint(1, photos - 1)
            for position, element in enumerate(elements):
                element["order"] = position if position < shared else position - 1
        elif dirty == "order_as_string":  # e.g. "3": some orders written as numeric strings
            chosen = {rng.randrange(len(elements))}
            chosen |= {i for i in range(len(elements)) if rng.random() < 0.4}
            for position in chosen:
                elements[position]["order"] = str(elements[position]["order"])
        elif dirty == "missing_created_at":
            chosen = {rng.randrange(len(elements))}
            chosen |= {i for i in range(len(elements)) if rng.random() < 0.3}
            for position in chosen:
                del elements[position]["created_at"]
        elif dirty == "duplicate_urls":  # a photo's element twice, still before the label
            copied = rng.randrange(photos)
            elements.insert(rng.randint(copied + 1, photos), dict(elements[copied]))
            _renumber(elements)
        elif dirty == "missing_objects":  # a photo (never the label) whose object was lost
            lost = objects.pop(rng.randrange(photos))
            missing.append(lost.key)
        elif dirty == "element_without_url":
            stray = {"order": 0, "created_at": elements[0].get("created_at", "")}
            elements.insert(rng.randint(0, photos), stray)
            _renumber(elements)
        elif dirty == "element_not_object":  # a bare URL string, as an old importer wrote
            picture = rng.choice(candidates)
            key = f"{prefix}/{len(objects)}.{self.photo_pool[picture].extension}"
            objects.append(PlannedObject(key=key, picture=picture, is_label=False))
            elements.insert(rng.randint(0, photos), self.url_for(key))
            _renumber(elements)
        elif dirty == "empty_arrays":  # its photos were deleted long ago
            return [], [], []
        elif dirty == "column_not_array":  # JSON null, or one element not wrapped in an array
            if rng.random() < 0.5:
                return None, [], []
            return elements[0], objects[:1], []
        return elements, objects, missing
