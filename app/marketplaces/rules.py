"""Each marketplace's photo rules, as data, in one place. Sources are cited per rule; a rule
that changes is changed here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MarketplaceRules:
    """What a marketplace accepts for a listing's photos."""

    name: str
    max_photos: int
    https_only: bool
    # MIME types the marketplace takes; an image whose type is not known yet (legacy history
    # before the enrichment fills it) is let through: the marketplace checks the bytes.
    accepted_types: frozenset[str]
    # Minimum length of the longest side in pixels, where the marketplace has one; checked
    # only when the dimensions are known.
    min_longest_side: int | None
    sources: tuple[str, ...]


VINTED = MarketplaceRules(
    name="vinted",
    # Vinted has no public listing API; its help centre's upload guidance allows up to 20
    # photos per item, JPEG or PNG, and the first photo is the cover.
    max_photos=20,
    https_only=True,
    accepted_types=frozenset({"image/jpeg", "image/png"}),
    min_longest_side=None,
    sources=("Vinted help centre, uploading an item: up to 20 photos; first photo is the cover",),
)

EBAY = MarketplaceRules(
    name="ebay",
    max_photos=24,
    https_only=True,
    accepted_types=frozenset(
        {
            "image/jpeg",
            "image/gif",
            "image/png",
            "image/bmp",
            "image/tiff",
            "image/avif",
            "image/heic",
            "image/webp",
        }
    ),
    min_longest_side=500,
    sources=(
        # "For most categories, sellers can include up to 24 pictures in one listing."
        "https://developer.ebay.com/api-docs/user-guides/static/trading-user-guide/pictures.html",
        # "The image formats supported are JPG, GIF, PNG, BMP, TIFF, AVIF, HEIC, and WEBP. In
        # addition, the provided URL must be secured using HTTPS (HTTP is not permitted)."
        "https://developer.ebay.com/api-docs/commerce/media/resources/image/methods/createImageFromUrl",
        # eBay picture policy: every picture at least 500 pixels on its longest side.
        "https://www.ebay.com/help/policies/listing-policies/picture-policy?id=4370",
    ),
)

ETSY = MarketplaceRules(
    name="etsy",
    # Etsy Open API v3 uploadListingImage: `rank` 1..10, ten images per listing.
    max_photos=10,
    https_only=True,
    accepted_types=frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"}),
    min_longest_side=None,
    sources=("https://developers.etsy.com/documentation/reference/#operation/uploadListingImage",),
)

MARKETPLACES: dict[str, MarketplaceRules] = {rules.name: rules for rules in (VINTED, EBAY, ETSY)}
