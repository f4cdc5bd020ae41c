"""The label rule: which image of a product is its price-tag photo."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from app.images.record import Image


@dataclass(frozen=True)
class LabelDecision:
    """Images after applying the label rule, and whether a human must pick the label."""

    images: tuple[Image, ...]
    needs_review: bool


def is_legacy_source(source: str | None, legacy_sources: Collection[str]) -> bool:
    """Tell whether a product's source is one of the configured legacy importers."""
    return source is not None and source in legacy_sources


def label_rule(images: Sequence[Image], *, is_legacy_source: bool) -> LabelDecision:
    """Label the last image of a legacy product; flag single-image legacy products for review."""
    in_order = tuple(sorted(images, key=lambda image: image.order))
    if not is_legacy_source:
        return LabelDecision(images=in_order, needs_review=False)
    if len(in_order) == 1:
        # One photo could be either the item or the price tag; a human has to decide.
        return LabelDecision(images=in_order, needs_review=True)
    # The old pythonApiWOO importer always uploaded the price-tag photo last.
    last = len(in_order) - 1
    labelled = tuple(
        replace(image, is_label=(index == last)) for index, image in enumerate(in_order)
    )
    return LabelDecision(images=labelled, needs_review=False)
