"""The enrichment's reads on the network: a small first range, widened only when the header
needs it, on pooled keep-alive connections (each new connection costs a round trip)."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Engine

from app.core.settings import Settings
from tests.backfill import test_enrich
from tests.backfill.test_enrich import (
    FAST,
    MediaServer,
    encode,
    enrich,
    migrated_product,
    migrated_products,
    rows,
)

media = test_enrich.media  # the same fixtures: a media server on loopback
media_settings = test_enrich.media_settings


def with_comment(jpeg: bytes, size: int) -> bytes:
    """The JPEG with a comment segment of `size` bytes before its size marker (as large
    EXIF or XMP metadata puts it)."""
    return jpeg[:2] + b"\xff\xfe" + (size + 2).to_bytes(2, "big") + b"x" * size + jpeg[2:]


def test_the_first_range_is_16_kib_and_widened_only_when_the_header_needs_it(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    fat_jpeg = with_comment(encode("JPEG", 300, 200), 30_000)
    assert len(fat_jpeg) > 64 * 1024
    urls = [
        media.serve("a.png", encode("PNG", 300, 200)),
        media.serve("b.jpg", encode("JPEG", 640, 480)),
        media.serve("fat.jpg", fat_jpeg),
    ]
    product_id = migrated_product(engine, tenant, urls)

    result = enrich(engine, media_settings, tenant)

    assert (result.enriched, result.failed, result.requests) == (3, 0, 4)
    asked: dict[str, list[str | None]] = {}
    for path, value in media.ranges:
        asked.setdefault(path, []).append(value)
    assert asked == {
        "/media/a.png": ["bytes=0-16383"],
        "/media/b.jpg": ["bytes=0-16383"],
        "/media/fat.jpg": ["bytes=0-16383", "bytes=0-65535"],
    }
    assert result.bytes_read == 16384 * 3 + 65536
    assert [(row["width"], row["height"]) for row in rows(engine, tenant, product_id)] == [
        (300, 200),
        (640, 480),
        (300, 200),
    ]


def test_ranged_reads_reuse_their_pooled_connections(
    engine: Engine, tenant: int, media: MediaServer, media_settings: Settings
) -> None:
    bodies = [encode("JPEG", 400, 300, seed=i) for i in range(12)]
    assert min(len(body) for body in bodies) > 64 * 1024, "a range shorter than the object"
    migrated_products(
        engine, tenant, [[media.serve(f"{i}.jpg", body)] for i, body in enumerate(bodies)]
    )

    result = enrich(engine, media_settings, tenant, replace(FAST, concurrency=2))

    assert (result.enriched, result.requests) == (12, 12)
    # Each range is read to its end, so its connection goes back to the pool; hung up on
    # at the last byte, every request opened a new one.
    assert media.connections <= 2
