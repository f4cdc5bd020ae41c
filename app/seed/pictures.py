"""Real picture files for the demo data, drawn with Pillow, deterministic from a seed:
product-like photos and price-tag-like labels, JPEG/PNG/WebP, varied sizes."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

FORMATS = (
    ("JPEG", "jpg", "image/jpeg"),
    ("PNG", "png", "image/png"),
    ("WEBP", "webp", "image/webp"),
)
# Longest side in pixels; the small ones are below eBay's 500 px minimum on purpose.
LONGEST_SIDES = (320, 420, 640, 800, 960, 1024, 1200, 1600)


@dataclass(frozen=True)
class Picture:
    """One generated file."""

    data: bytes
    extension: str
    mime_type: str
    width: int
    height: int
    is_label: bool


def _size(rng: random.Random) -> tuple[int, int]:
    longest = rng.choice(LONGEST_SIDES)
    shortest = int(longest * rng.uniform(0.6, 0.85))
    return (longest, shortest) if rng.random() < 0.4 else (shortest, longest)


def _encode(image: Image.Image, rng: random.Random) -> tuple[bytes, str, str]:
    pillow_format, extension, mime_type = rng.choices(FORMATS, weights=(6, 2, 2))[0]
    buffer = io.BytesIO()
    if pillow_format == "PNG":
        image = image.quantize(colors=64)  # keeps PNGs small, like optimised product shots
    image.save(buffer, format=pillow_format, quality=72)
    return buffer.getvalue(), extension, mime_type


def photo(rng: random.Random) -> Picture:
    """A product-like photo: a garment silhouette on a plain or gradient background."""
    width, height = _size(rng)
    background = tuple(rng.randint(200, 250) for _ in range(3))
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for y in range(0, height, max(1, height // 24)):  # a soft gradient
        shade = int(20 * y / height)
        draw.rectangle((0, y, width, y + height // 24), fill=tuple(c - shade for c in background))
    colour = tuple(rng.randint(20, 180) for _ in range(3))
    cx, cy, w, h = width // 2, height // 2, width // 3, height // 3
    shape = rng.choice(("shirt", "shoe", "bag"))
    if shape == "shirt":
        draw.polygon(
            [
                (cx - w, cy - h // 2),
                (cx - w // 2, cy - h),
                (cx + w // 2, cy - h),
                (cx + w, cy - h // 2),
                (cx + w // 2, cy - h // 3),
                (cx + w // 2, cy + h),
                (cx - w // 2, cy + h),
                (cx - w // 2, cy - h // 3),
            ],
            fill=colour,
        )
    elif shape == "shoe":
        draw.ellipse((cx - w, cy, cx + w, cy + h // 2), fill=colour)
        draw.rectangle((cx - w, cy - h // 2, cx - w // 3, cy + h // 4), fill=colour)
    else:
        draw.rounded_rectangle((cx - w, cy - h // 2, cx + w, cy + h), radius=w // 5, fill=colour)
        draw.arc(
            (cx - w // 2, cy - h, cx + w // 2, cy), 180, 360, fill=colour, width=max(2, w // 12)
        )
    data, extension, mime_type = _encode(image, rng)
    return Picture(data, extension, mime_type, width, height, is_label=False)


def label(rng: random.Random) -> Picture:
    """A price-tag-like photo: a manila tag with a hole, a price, bars and an SKU."""
    width, height = rng.choice(((600, 800), (480, 640), (900, 1200)))
    image = Image.new("RGB", (width, height), (90, 90, 95))
    draw = ImageDraw.Draw(image)
    tag = (width // 8, height // 8, width * 7 // 8, height * 7 // 8)
    draw.rounded_rectangle(tag, radius=width // 20, fill=(236, 214, 160))
    draw.ellipse((width // 2 - 20, tag[1] + 20, width // 2 + 20, tag[1] + 60), fill=(90, 90, 95))
    price = f"{rng.randint(3, 180)},{rng.choice(('00', '50', '90', '99'))} EUR"
    draw.text((tag[0] + 30, height // 3), price, fill=(20, 20, 20))
    draw.text(
        (tag[0] + 30, height // 3 + 30), f"SKU {rng.randint(10000, 99999)}", fill=(40, 40, 40)
    )
    x = tag[0] + 30
    while x < tag[2] - 30:  # barcode-like bars
        bar = rng.choice((2, 3, 5))
        draw.rectangle((x, height * 3 // 5, x + bar, height * 3 // 4), fill=(0, 0, 0))
        x += bar + rng.choice((2, 3, 4))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=72)
    return Picture(buffer.getvalue(), "jpg", "image/jpeg", width, height, is_label=True)


def picture_pool(
    seed: int, *, photos: int = 48, labels: int = 12
) -> tuple[tuple[Picture, ...], tuple[Picture, ...]]:
    """A deterministic pool of photos and labels, reused across many object keys."""
    rng = random.Random(f"pictures-{seed}")
    return tuple(photo(rng) for _ in range(photos)), tuple(label(rng) for _ in range(labels))
