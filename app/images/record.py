"""The image record shared by the JSONB column and the product_images table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True, slots=True)
class Image:
    """One product image; datetimes are timezone-aware."""

    id: UUID
    url: str
    order: int
    is_label: bool
    alt_text: str | None
    tags: tuple[str, ...]
    mime_type: str | None
    file_size: int | None
    width: int | None
    height: int | None
    created_at: datetime
    updated_at: datetime


IMAGE_KEYS: tuple[str, ...] = (
    "id",
    "url",
    "order",
    "is_label",
    "alt_text",
    "tags",
    "mime_type",
    "file_size",
    "width",
    "height",
    "created_at",
    "updated_at",
)
