"""Real picture files for the demo data, drawn with Pillow and deterministic from a seed.

A pool is described first (`pool_specs`: kind, format, size; cheap, no drawing) so the plan
can name keys and extensions before anything is rendered; `render` then draws one spec.
Product-like photos show a garment, shoe or bag silhouette on a plain or gradient
background; labels are price tags (white or manila, a hole, a price, bars and an SKU).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

PHOTO_KINDS = ("garment", "shoe", "bag")
LABEL_KIND = "label"
# (Pillow format, extension, MIME type, weight): mostly JPEG, like phone uploads.
FORMATS = (
    ("JPEG", "jpg", "image/jpeg", 6),
    ("PNG", "png", "image/png", 2),
    ("WEBP", "webp", "image/webp", 2),
)
# Longest side in pixels; about one photo in eight is under 500 px on purpose (marketplaces
# such as eBay refuse them, and the later rule that excludes them needs some to exclude).
PHOTO_LONGEST_SIDES = (320, 440, 640, 800, 960, 1024, 1200, 1280, 1440, 1600)
PHOTO_SIDE_WEIGHTS = (1, 1, 3, 4, 4, 3, 3, 2, 2, 2)
LABEL_LONGEST_SIDES = (480, 640, 800, 1024)
QUALITY = 75
DEFAULT_PHOTOS = 60
DEFAULT_LABELS = 12


@dataclass(frozen=True)
class PictureSpec:
    """One picture of the pool, before it is drawn."""

    index: int
    kind: str  # garment, shoe, bag or label
    pillow_format: str
    extension: str
    mime_type: str
    width: int
    height: int
    draw_seed: int

    @property
    def is_label(self) -> bool:
        """Whether this is a price-tag picture."""
        return self.kind == LABEL_KIND


@dataclass(frozen=True)
class Picture:
    """A drawn picture: its spec and its encoded bytes."""

    spec: PictureSpec
    data: bytes


def pool_specs(
    seed: int, *, photos: int = DEFAULT_PHOTOS, labels: int = DEFAULT_LABELS
) -> tuple[tuple[PictureSpec, ...], tuple[PictureSpec, ...]]:
    """The pool's photos and labels (kinds, formats, sizes), deterministic from the seed."""
    rng = random.Random(f"seed-pictures-{seed}")
    photo_specs = tuple(
        _spec(rng, index, PHOTO_KINDS[index % len(PHOTO_KINDS)], _photo_size(rng))
        for index in range(photos)
    )
    label_specs = tuple(_spec(rng, index, LABEL_KIND, _label_size(rng)) for index in range(labels))
    return photo_specs, label_specs


def render(spec: PictureSpec) -> Picture:
    """Draw and encode one picture; the same spec always gives the same bytes."""
    rng = random.Random(spec.draw_seed)
    image = _draw_label(spec, rng) if spec.is_label else _draw_photo(spec, rng)
    buffer = io.BytesIO()
    if spec.pillow_format == "PNG":
        # A palette keeps PNGs small, like the optimised shots some sellers upload.
        image.quantize(colors=64).save(buffer, format="PNG", optimize=False)
    else:
        image.save(buffer, format=spec.pillow_format, quality=QUALITY)
    return Picture(spec=spec, data=buffer.getvalue())


def _spec(rng: random.Random, index: int, kind: str, size: tuple[int, int]) -> PictureSpec:
    pillow_format, extension, mime_type, _ = rng.choices(
        FORMATS, weights=[weight for *_, weight in FORMATS]
    )[0]
    return PictureSpec(
        index=index,
        kind=kind,
        pillow_format=pillow_format,
        extension=extension,
        mime_type=mime_type,
        width=size[0],
        height=size[1],
        draw_seed=rng.getrandbits(64),
    )


def _photo_size(rng: random.Random) -> tuple[int, int]:
    longest = rng.choices(PHOTO_LONGEST_SIDES, weights=PHOTO_SIDE_WEIGHTS)[0]
    shortest = int(longest * rng.uniform(0.62, 0.9))
    # Portrait dominates second-hand listings; some landscape and a few square shots.
    shape = rng.choices(("portrait", "landscape", "square"), weights=(6, 3, 1))[0]
    if shape == "square":
        return longest, longest
    return (shortest, longest) if shape == "portrait" else (longest, shortest)


def _label_size(rng: random.Random) -> tuple[int, int]:
    longest = rng.choice(LABEL_LONGEST_SIDES)
    shortest = int(longest * rng.uniform(0.7, 0.8))
    return (shortest, longest) if rng.random() < 0.7 else (longest, shortest)


def _colour(rng: random.Random, low: int, high: int) -> tuple[int, int, int]:
    return (rng.randint(low, high), rng.randint(low, high), rng.randint(low, high))


def _background(spec: PictureSpec, rng: random.Random) -> Image.Image:
    top = _colour(rng, 190, 250)
    if rng.random() < 0.4:
        return Image.new("RGB", (spec.width, spec.height), top)
    # A vertical gradient, drawn small and stretched (fast, and smooth after resizing).
    bottom = tuple(max(0, c - rng.randint(25, 70)) for c in top)
    strip = Image.new("RGB", (1, 64))
    for y in range(64):
        strip.putpixel(
            (0, y), tuple(int(t + (b - t) * y / 63) for t, b in zip(top, bottom, strict=True))
        )
    return strip.resize((spec.width, spec.height), Image.Resampling.BILINEAR)


def _draw_photo(spec: PictureSpec, rng: random.Random) -> Image.Image:
    image = _background(spec, rng)
    draw = ImageDraw.Draw(image)
    width, height = spec.width, spec.height
    colour = _colour(rng, 15, 200)
    shadow = tuple(max(0, c - 40) for c in colour)
    cx = width // 2 + rng.randint(-width // 12, width // 12)
    cy = height // 2 + rng.randint(-height // 12, height // 12)
    w = int(min(width, height) * rng.uniform(0.28, 0.38))
    h = int(w * rng.uniform(0.9, 1.2))
    # A soft floor shadow under every item.
    floor = cy + h // 2 if spec.kind == "shoe" else cy + h
    draw.ellipse((cx - w, floor - h // 10, cx + w, floor + h // 10), fill=(160, 160, 160))
    if spec.kind == "garment":
        body = [
            (cx - w, cy - h // 2),
            (cx - w // 2, cy - h),
            (cx - w // 6, cy - h + h // 8),
            (cx + w // 6, cy - h + h // 8),
            (cx + w // 2, cy - h),
            (cx + w, cy - h // 2),
            (cx + w * 2 // 3, cy - h // 4),
            (cx + w // 2, cy - h // 3),
            (cx + w // 2, cy + h),
            (cx - w // 2, cy + h),
            (cx - w // 2, cy - h // 3),
            (cx - w * 2 // 3, cy - h // 4),
        ]
        draw.polygon(body, fill=colour, outline=shadow)
        for row in range(rng.randint(0, 6)):  # stripes on some garments
            y = cy - h // 3 + row * h // 5
            draw.rectangle((cx - w // 2, y, cx + w // 2, y + h // 20), fill=shadow)
    elif spec.kind == "shoe":
        draw.ellipse((cx - w, cy, cx + w, cy + h // 2), fill=colour, outline=shadow)
        draw.rounded_rectangle(
            (cx - w, cy - h // 2, cx - w // 4, cy + h // 3), radius=w // 8, fill=colour
        )
        draw.rectangle((cx - w, cy + h // 3, cx + w, cy + h // 2), fill=_colour(rng, 220, 255))
        for lace in range(4):
            x = cx - w // 4 + lace * w // 6
            draw.line((x, cy - h // 8, x + w // 10, cy + h // 6), fill=shadow, width=3)
    else:
        draw.rounded_rectangle(
            (cx - w, cy - h // 2, cx + w, cy + h), radius=w // 5, fill=colour, outline=shadow
        )
        draw.arc(
            (cx - w // 2, cy - h, cx + w // 2, cy), 180, 360, fill=shadow, width=max(3, w // 12)
        )
        draw.rectangle((cx - w // 10, cy - h // 4, cx + w // 10, cy), fill=(212, 175, 55))
    return image


def _draw_label(spec: PictureSpec, rng: random.Random) -> Image.Image:
    width, height = spec.width, spec.height
    image = Image.new("RGB", (width, height), _colour(rng, 60, 120))  # a table or a hand
    draw = ImageDraw.Draw(image)
    paper = (250, 250, 246) if rng.random() < 0.5 else (234, 211, 158)  # white or manila
    left, top, right, bottom = width // 7, height // 8, width * 6 // 7, height * 7 // 8
    draw.rounded_rectangle((left, top, right, bottom), radius=width // 25, fill=paper)
    hole = max(8, width // 30)
    hx, hy = (left + right) // 2, top + hole * 3
    draw.ellipse((hx - hole, hy - hole, hx + hole, hy + hole), fill=image.getpixel((1, 1)))
    draw.line((hx, hy, hx + width // 5, 0), fill=(200, 30, 30), width=max(2, width // 200))
    tag_width = right - left
    big = ImageFont.load_default(size=max(14, tag_width // 6))
    small = ImageFont.load_default(size=max(10, tag_width // 14))
    price = f"{rng.randint(2, 180)},{rng.choice(('00', '50', '90', '99'))}"
    at = (left + tag_width // 10, top + (bottom - top) // 4)
    draw.text(at, price, fill=(20, 20, 20), font=big)
    _euro_sign(draw, draw.textbbox(at, price, font=big), (20, 20, 20))
    sku = f"SKU {rng.choice('ABCDEFGH')}{rng.randint(10000, 99999)}-{rng.randint(1, 9)}"
    draw.text(
        (left + tag_width // 10, top + (bottom - top) // 2), sku, fill=(50, 50, 50), font=small
    )
    x, bar_top, bar_bottom = left + tag_width // 10, bottom - (bottom - top) // 3, bottom - 20
    while x < right - tag_width // 10:  # barcode-like bars
        bar = rng.choice((1, 2, 3, 5))
        draw.rectangle((x, bar_top, x + bar, bar_bottom), fill=(0, 0, 0))
        x += bar + rng.choice((2, 3, 4))
    return image


def _euro_sign(
    draw: ImageDraw.ImageDraw, text_box: tuple[float, float, float, float], ink: tuple[int, ...]
) -> None:
    """Draw "€" after the price (Pillow's built-in font has no euro glyph)."""
    _, text_top, text_right, text_bottom = (int(v) for v in text_box)
    size = text_bottom - text_top
    left = text_right + size // 4
    stroke = max(2, size // 9)
    draw.arc((left, text_top, left + size, text_bottom), 50, 310, fill=ink, width=stroke)
    for y in (text_top + size * 2 // 5, text_top + size * 3 // 5):
        draw.line((left - size // 8, y, left + size * 3 // 5, y), fill=ink, width=stroke)
