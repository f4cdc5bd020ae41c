"""What the demo shops sell: second-hand items with realistic titles, prices and descriptions."""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal

JEANS_SIZES = ("W26", "W28", "W29", "W30", "W31", "W32", "W33", "W34", "W36")
LETTER_SIZES = ("XS", "S", "M", "L", "XL", "XXL")
DRESS_SIZES = ("34", "36", "38", "40", "42", "44")
SHOE_SIZES = ("36", "37", "38", "39", "40", "41", "42", "43", "44", "45")
NO_SIZE: tuple[str, ...] = ()
CONDITIONS = ("new with tags", "new without tags", "very good", "good", "satisfactory")
DETAILS = (
    "Smoke-free home.",
    "Worn a handful of times.",
    "Small mark on the inside, see photos.",
    "Measurements on request.",
    "Colour true to the photos.",
    "Bundle discount available.",
)


@dataclass(frozen=True)
class Item:
    """A kind of item a shop sells: brand, model, picture kind, sizes and price range (EUR)."""

    brand: str | None
    model: str
    kind: str  # garment, shoe or bag: the silhouette its photos show
    sizes: tuple[str, ...]
    low: int
    high: int


ITEMS = (
    Item("Levi's", "501 jeans", "garment", JEANS_SIZES, 15, 60),
    Item("Levi's", "Trucker denim jacket", "garment", LETTER_SIZES, 25, 80),
    Item("Nike", "Air Max 90 sneakers", "shoe", SHOE_SIZES, 35, 120),
    Item("Nike", "Tech Fleece hoodie", "garment", LETTER_SIZES, 30, 90),
    Item("Adidas", "Stan Smith sneakers", "shoe", SHOE_SIZES, 25, 70),
    Item("Adidas", "Firebird track jacket", "garment", LETTER_SIZES, 20, 55),
    Item("Zara", "satin midi dress", "garment", DRESS_SIZES, 8, 30),
    Item("Zara", "wool blend coat", "garment", DRESS_SIZES, 20, 70),
    Item("H&M", "oversized t-shirt", "garment", LETTER_SIZES, 3, 12),
    Item("Mango", "leather ankle boots", "shoe", SHOE_SIZES[:6], 20, 60),
    Item("Carhartt WIP", "Detroit jacket", "garment", LETTER_SIZES, 60, 160),
    Item("Lacoste", "L.12.12 polo shirt", "garment", LETTER_SIZES, 18, 45),
    Item("Longchamp", "Le Pliage tote bag", "bag", NO_SIZE, 35, 90),
    Item("Michael Kors", "Jet Set crossbody bag", "bag", NO_SIZE, 40, 120),
    Item("Dr. Martens", "1460 boots", "shoe", SHOE_SIZES, 45, 110),
    Item("The North Face", "Nuptse puffer jacket", "garment", LETTER_SIZES, 90, 220),
    Item("Ralph Lauren", "cable knit jumper", "garment", LETTER_SIZES, 25, 70),
    Item("Converse", "Chuck Taylor All Star", "shoe", SHOE_SIZES, 15, 45),
    Item("Vans", "Old Skool sneakers", "shoe", SHOE_SIZES, 15, 45),
    Item("Sézane", "Gaspard cardigan", "garment", LETTER_SIZES[:5], 40, 95),
    Item("Kipling", "Art M shoulder bag", "bag", NO_SIZE, 20, 50),
    Item(None, "vintage silk scarf", "garment", NO_SIZE, 5, 25),
    Item(None, "vintage leather belt bag", "bag", NO_SIZE, 10, 35),
)
COLOURS = ("black", "navy", "white", "beige", "khaki", "burgundy", "grey", "camel", "blue")
PRICE_ENDINGS = (Decimal("0.00"), Decimal("0.50"), Decimal("0.90"), Decimal("0.99"))


@dataclass(frozen=True)
class Listing:
    """A product's text and price."""

    title: str
    description: str
    brand: str | None
    price: Decimal
    kind: str


def listing(rng: random.Random) -> Listing:
    """A random listing, e.g. "Levi's 501 jeans W32, navy" at 24.90."""
    item = rng.choice(ITEMS)
    size = f" {rng.choice(item.sizes)}" if item.sizes else ""
    colour = rng.choice(COLOURS)
    if item.brand is None:
        title = f"{item.model[0].upper()}{item.model[1:]}{size}"
    else:
        title = f"{item.brand} {item.model}{size}"
    description = (
        f"{title}, {colour}. Condition: {rng.choice(CONDITIONS)}. {rng.choice(DETAILS)}"
        " Ships within 48 h."
    )
    price = Decimal(rng.randint(item.low, item.high)) + rng.choice(PRICE_ENDINGS)
    return Listing(
        title=title, description=description, brand=item.brand, price=price, kind=item.kind
    )
