"""Marketplace publication rules and photo selection (pure: no I/O)."""

from app.marketplaces.rules import EBAY, ETSY, MARKETPLACES, VINTED, MarketplaceRules
from app.marketplaces.selection import Exclusion, NoPublishablePhoto, PhotoSelection, select_photos

__all__ = [
    "EBAY",
    "ETSY",
    "MARKETPLACES",
    "VINTED",
    "Exclusion",
    "MarketplaceRules",
    "NoPublishablePhoto",
    "PhotoSelection",
    "select_photos",
]
