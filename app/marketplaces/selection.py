"""Which of a product's images a marketplace may receive: never a label nor another image of
the label's file, in order, within the marketplace's rules; every image left out comes back
with its reason."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.core.errors import DomainError
from app.images import Image
from app.images.operations import label_objects, stored_object
from app.marketplaces.rules import MarketplaceRules

LABEL = "label: internal price-tag photo"
LABEL_FILE = "same file as the label: internal price-tag photo"
LABEL_REASONS = frozenset({LABEL, LABEL_FILE})


@dataclass(frozen=True)
class Exclusion:
    """An image left out of a payload, and why."""

    image_id: str
    url: str
    reason: str


@dataclass(frozen=True)
class PhotoSelection:
    """The photos to publish, in order (the first is the cover), and what was left out."""

    photos: tuple[Image, ...]
    excluded: tuple[Exclusion, ...]


class NoPublishablePhoto(DomainError, ValueError):
    """A product left with no photo a marketplace may receive: never list it empty (409,
    with what was left out and why)."""

    status = 409
    field = "images"

    def __init__(self, product_id: int, marketplace: str, excluded: Sequence[Exclusion]):
        reasons = sorted({e.reason for e in excluded}) or ["the product has no image"]
        super().__init__(
            f"product {product_id} has no photo that can be published on {marketplace}: "
            + "; ".join(reasons)
        )
        self.product_id = product_id
        self.marketplace = marketplace
        self.excluded = tuple(excluded)

    def extra(self) -> dict[str, Any]:
        return {"excluded": [vars(e) for e in self.excluded]}

    @property
    def refused(self) -> tuple[Exclusion, ...]:
        """The images a marketplace rule refused (the label and its file are not refusals):
        when there are some, the product has photos that could not be published."""
        return tuple(e for e in self.excluded if e.reason not in LABEL_REASONS)


def select_photos(
    images: Sequence[Image], rules: MarketplaceRules, *, allow_http: bool = False
) -> PhotoSelection:
    """The images in `order`, labels and their files out, each rule applied, then the cap."""
    photos: list[Image] = []
    excluded: list[Exclusion] = []
    labels = label_objects(images)
    for image in sorted(images, key=lambda i: i.order):
        reason = _rule_broken(image, rules, labels, allow_http=allow_http)
        if reason is None and len(photos) >= rules.max_photos:
            reason = f"over {rules.name}'s limit of {rules.max_photos} photos"
        if reason is None:
            photos.append(image)
        else:
            excluded.append(Exclusion(str(image.id), image.url, reason))
    return PhotoSelection(tuple(photos), tuple(excluded))


def _rule_broken(
    image: Image, rules: MarketplaceRules, labels: frozenset[str], *, allow_http: bool
) -> str | None:
    if image.is_label:
        return LABEL
    if stored_object(image.url) in labels:
        return LABEL_FILE
    scheme = urlsplit(image.url).scheme.lower()
    if scheme != "https" and not (allow_http and scheme == "http"):
        return f"url is not https ({rules.name} fetches https only)"
    if image.mime_type is not None and image.mime_type.lower() not in rules.accepted_types:
        return f"type {image.mime_type} not accepted by {rules.name}"
    if rules.min_longest_side and image.width and image.height:
        longest = max(image.width, image.height)
        if longest < rules.min_longest_side:
            return (
                f"{longest} px on the longest side, {rules.name} wants at least "
                f"{rules.min_longest_side}"
            )
    return None
