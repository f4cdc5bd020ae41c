"""Classify how a product's table rows differ from its JSONB (pure; no I/O)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

from app.images.normalise import normalise_legacy
from app.images.record import Image

MISSING = "missing"  # in the JSONB, not in the table
EXTRA = "extra"  # in the table, not in the JSONB
DUPLICATE = "duplicate"  # the table holds the same picture (url) more often than the JSONB
REORDERED = "reordered"  # same images, another order
FIELD_DIFFERS = "field_differs"  # same image, some field differs
NOT_AN_ARRAY = "not_an_array"  # the column itself is not an array (no image can match it)


@dataclass(frozen=True)
class Difference:
    """One way a product's two representations disagree."""

    product_id: int
    kind: str
    detail: str
    jsonb_ids: tuple[str, ...] = ()
    table_ids: tuple[str, ...] = ()


def classify(
    product_id: int, expected: Sequence[Image], actual: Sequence[Image]
) -> list[Difference]:
    """Every difference between the JSONB's images (expected) and the table's rows (actual)."""
    expected_ids = [str(image.id) for image in expected]
    actual_ids = [str(image.id) for image in actual]
    differences: list[Difference] = []
    missing = [i for i in expected_ids if i not in set(actual_ids)]
    extra = [i for i in actual_ids if i not in set(expected_ids)]
    if missing:
        differences.append(
            Difference(
                product_id,
                MISSING,
                f"{len(missing)} image(s) only in the JSONB",
                tuple(missing),
                (),
            )
        )
    if extra:
        expected_urls = Counter(image.url for image in expected)
        actual_urls = Counter(image.url for image in actual)
        doubled = sorted(
            url
            for url, n in actual_urls.items()
            if n > expected_urls.get(url, 0) and expected_urls.get(url, 0) > 0
        )
        kind = DUPLICATE if doubled else EXTRA
        detail = (
            f"url(s) held more often in the table: {', '.join(doubled)}"
            if doubled
            else f"{len(extra)} image(s) only in the table"
        )
        differences.append(Difference(product_id, kind, detail, (), tuple(extra)))
    if missing or extra:
        return differences
    if expected_ids != actual_ids:
        return [
            Difference(
                product_id,
                REORDERED,
                "same images in another order",
                tuple(expected_ids),
                tuple(actual_ids),
            )
        ]
    by_id = {image.id: image for image in actual}
    for image in expected:
        other = by_id[image.id]
        changed = [
            f.name for f in fields(Image) if getattr(image, f.name) != getattr(other, f.name)
        ]
        if changed:
            differences.append(
                Difference(
                    product_id,
                    FIELD_DIFFERS,
                    f"image {image.id}: {', '.join(changed)}",
                    (str(image.id),),
                    (str(other.id),),
                )
            )
    return differences


def compare_representations(
    product_id: int,
    raw_jsonb: object,
    rows: Sequence[Image],
    *,
    product_created_at: datetime,
    is_legacy_source: bool,
) -> list[Difference]:
    """How the table's rows differ from the JSONB once normalised exactly as the backfill
    and the dual-write do (the shadow read's comparison; elements the normalisation rejects
    are in the rejection report, not expected in the table)."""
    expected = normalise_legacy(
        raw_jsonb,
        product_id=product_id,
        product_created_at=product_created_at,
        is_legacy_source=is_legacy_source,
    ).images
    return classify(product_id, expected, rows)
