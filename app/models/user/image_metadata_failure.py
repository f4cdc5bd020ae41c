"""`user_<id>.image_metadata_failures`: images whose metadata the enrichment could not read."""

from datetime import datetime
from uuid import UUID

from sqlalchemy import BigInteger, DateTime, Integer, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class ImageMetadataFailure(Base):
    """The last failure to read one image's metadata, with its reason (one row per image)."""

    __tablename__ = "image_metadata_failures"

    # No foreign key, like the other reports: the record outlives a deleted image.
    image_id: Mapped[UUID] = mapped_column(primary_key=True)
    product_id: Mapped[int] = mapped_column(BigInteger)
    url: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    # Enrichment runs that failed on this image (each may have made several requests).
    attempts: Mapped[int] = mapped_column(Integer)
    last_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
